"""The emulator as a background daemon that every process of a user (a Metaflow step, a foreach task,
a notebook kernel, the aws CLI) finds through a state file and shares.

- ``serve``: run in the foreground (``mf-sm-async local serve``).
- ``start``: reuse a healthy daemon or start one in its own session, so a Ctrl-C in the terminal or
  in a flow never kills it; concurrent starts are serialised by a file lock and end with one daemon.
- ``stop``: SIGTERM, which stops every model-server process, then wait until the daemon is gone.

The state directory is ``$MF_SM_ASYNC_HOME/local`` (default ``~/.mf_sm_async/local``).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from ..errors import TargetError

STATE_FILE = "state.json"
LOOPBACK = "127.0.0.1"
# The daemon and its model servers need no AWS credentials (the emulator checks none), so a user's real
# ones never reach them: a model's code, its log, or a crash dump cannot show what it never had.
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                        "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                        "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_SHARED_CREDENTIALS_FILE",
                        "AWS_CONFIG_FILE")


def without_credentials(environ: dict) -> dict:
    """``environ`` without AWS credentials or the means to find them."""
    return {k: v for k, v in environ.items() if k not in CREDENTIAL_VARIABLES}


def check_host(host: str, allow_remote: bool = False) -> str:
    """``host`` if it is a loopback address (or ``allow_remote``); else a ConfigError saying how to allow it.

    The emulator has no authentication and its control API kills processes and arms faults: reachable
    from another machine, anyone there could use it.

    >>> check_host("127.0.0.1")
    '127.0.0.1'
    """
    import ipaddress
    import socket

    from ..errors import ConfigError

    if not isinstance(host, str) or not host:
        raise ConfigError("--host", host, "a host name or IP address, e.g. 127.0.0.1")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        raise ConfigError("--host", host, "a host name or IP address this machine has", hint=str(exc)) from None
    loopback = addresses and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
    if not loopback and not allow_remote:
        raise ConfigError("--host", host, "a loopback address (127.0.0.1, ::1, localhost) unless --allow-remote "
                          "is given", hint=f"the emulator has no authentication: `--host {host} --allow-remote` "
                          "exposes it (and its fault API) to every machine that can reach this one")
    return host


def default_state_dir() -> Path:
    home = os.environ.get("MF_SM_ASYNC_HOME") or Path.home() / ".mf_sm_async"
    return Path(home) / "local"


@contextmanager
def _locked(path: Path, blocking: bool = True):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        yield handle


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _healthy(url: str, pid: int) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_mf_sm_async/health", timeout=2) as response:
            return json.load(response).get("pid") == pid
    except (OSError, ValueError):
        return False


def status(state_dir: Path | None = None) -> dict | None:
    """The running daemon's state (url, pid, port, state_dir) or None."""
    state_dir = Path(state_dir or default_state_dir())
    try:
        state = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if pid_alive(state["pid"]) and _healthy(state["url"], state["pid"]):
        return state
    return None


def start(state_dir: Path | None = None, *, time_scale: float | None = None, timeout: float = 60.0,
          host: str = LOOPBACK, allow_remote: bool = False) -> dict:
    """Return the state of a healthy daemon, starting one (detached, own session) if none runs.

    ``host``: the address to bind, loopback unless ``allow_remote`` (see :func:`check_host`)."""
    check_host(host, allow_remote)
    state_dir = Path(state_dir or default_state_dir())
    with _locked(state_dir / "start.lock"):
        running = status(state_dir)
        if running:
            return running
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        command = [sys.executable, "-m", "mf_sm_async.local.daemon", "serve", "--state-dir", str(state_dir)]
        if time_scale is not None:
            command += ["--time-scale", str(time_scale)]
        if host != LOOPBACK:
            command += ["--host", host] + (["--allow-remote"] if allow_remote else [])
        with open(state_dir / "daemon.log", "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, close_fds=True,
                                       env=without_credentials(os.environ))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise TargetError(f"the local emulator exited at start (code {process.returncode})",
                                  f"see {state_dir / 'daemon.log'}")
            state = status(state_dir)
            if state and state["pid"] == process.pid:
                return state
            time.sleep(0.05)
        process.kill()
        raise TargetError(f"the local emulator did not start within {timeout:.0f}s",
                          f"see {state_dir / 'daemon.log'}")


def stop(state_dir: Path | None = None, timeout: float = 20.0) -> bool:
    """Stop the daemon and its model servers; True if one was running."""
    state_dir = Path(state_dir or default_state_dir())
    try:
        pid = json.loads((state_dir / STATE_FILE).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return False
    if not pid_alive(pid):
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return True


def serve(state_dir: Path | None = None, *, host: str = LOOPBACK, port: int = 0,
          time_scale: float = 1.0, allow_remote: bool = False) -> None:
    """Run the emulator in the foreground until SIGINT / SIGTERM; ``host`` as for :func:`start`."""
    import logging

    check_host(host, allow_remote)
    for name in CREDENTIAL_VARIABLES:  # `local serve` in a shell that has them: model servers inherit os.environ
        os.environ.pop(name, None)

    from .server import Emulator, EmulatorServer  # heavy (moto): only in the daemon process

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    state_dir = Path(state_dir or default_state_dir())
    with _locked(state_dir / "daemon.lock", blocking=False) as lock:
        if lock is None:
            raise TargetError(f"another emulator daemon already serves {state_dir}",
                              "use `mf-sm-async local status` / `local stop`")
        server = EmulatorServer(Emulator(state_dir, time_scale=time_scale), host=host, port=port)
        state = {"url": server.url, "pid": os.getpid(), "port": server.port, "state_dir": str(state_dir),
                 "time_scale": time_scale}
        tmp = state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(state_dir / STATE_FILE)

        def on_signal(signum, frame):
            raise SystemExit(0)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        print(f"mf-sm-async emulator listening on {server.url} pid={os.getpid()} state={state_dir}", flush=True)
        try:
            server.serve_forever()
        finally:
            server.stop()
            try:
                if json.loads((state_dir / STATE_FILE).read_text()).get("pid") == os.getpid():
                    (state_dir / STATE_FILE).unlink()
            except (OSError, ValueError):
                pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mf_sm_async.local.daemon")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--allow-remote", action="store_true")
    parser.add_argument("--time-scale", type=float,
                        default=float(os.environ.get("MF_SM_ASYNC_TIME_SCALE", "1")))
    args = parser.parse_args(argv)
    serve(args.state_dir, host=args.host, port=args.port, time_scale=args.time_scale, allow_remote=args.allow_remote)


if __name__ == "__main__":
    main()
