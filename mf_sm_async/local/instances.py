"""One endpoint instance: a real model-server process speaking the container contract.

The process serves ``GET /ping`` and ``POST /invocations`` on a port of its own: our model server
(:mod:`mf_sm_async.local.model_server`) binds a free one and prints it; a command mapped to another image
(:mod:`mf_sm_async.local.containers`) is given one. Either exits by itself when the daemon dies (it
watches its parent pid), so no instance outlives the emulator.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .processes import free_port


class InstanceFailed(Exception):
    """The model server did not come up; the message ends with the last lines of its log."""


class InstanceGone(Exception):
    """The connection to a running instance broke (the process died or was killed)."""


class InvocationTimedOut(Exception):
    pass


@dataclass(frozen=True)
class Launch:
    """How each instance of an endpoint starts. ``{port}`` in ``argv`` and in ``env`` values becomes the
    instance's port; ``announces_port`` says the process binds a free port itself and prints it (our
    model server), otherwise the emulator picks one and passes it."""

    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    announces_port: bool = True


@dataclass
class ModelResponse:
    status: int
    body: bytes
    content_type: str | None


_LISTENING = re.compile(rb"model server listening on http://127\.0\.0\.1:(\d+) pid=(\d+)")


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class Instance:
    def __init__(self, launch: Launch, log_dir: Path, env: dict[str, str] | None = None):
        self.launch = launch
        self.instance_id = f"i-{uuid.uuid4().hex[:12]}"  # unique across daemon restarts: names its log
        self.log_path = log_dir / f"{self.instance_id}.log"
        self.env = env or {}  # the model's Environment
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the process: our model server picks its own port (no race for a free one), a mapped
        command is given a free port; see wait_ready."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        port = "0" if self.launch.announces_port else str(free_port())
        env = {**os.environ, **self.env, **{k: v.replace("{port}", port) for k, v in self.launch.env.items()},
               "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [arg.replace("{port}", port) for arg in self.launch.argv],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=str(self.launch.cwd),
            )
        if not self.launch.announces_port:
            self.port = int(port)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise InstanceFailed(f"model server exited with code {self.process.returncode}:\n"
                                     f"{tail(self.log_path)}")
            if not self.port:
                self.port = self._listening_port()
                if not self.port:
                    time.sleep(0.05)
                    continue
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise InstanceFailed(f"model server did not answer /ping within {timeout:.0f}s:\n{tail(self.log_path)}")

    def _listening_port(self) -> int:
        """The port from the model server's first log line, once it has written it."""
        try:
            with open(self.log_path, "rb") as log:
                for match in _LISTENING.finditer(log.read()):
                    if int(match.group(2)) == self.process.pid:
                        return int(match.group(1))
        except OSError:
            pass
        return 0

    def wait_exit(self, timeout: float) -> bool:
        """True if the process has exited or exits within ``timeout`` seconds."""
        try:
            self.process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def connect(self) -> http.client.HTTPConnection:
        """A keep-alive connection for one worker thread."""
        return http.client.HTTPConnection("127.0.0.1", self.port, blocksize=1 << 20)

    def invoke(self, conn: http.client.HTTPConnection, body, length: int, *, content_type: str | None,
               accept: str | None, custom_attributes: str | None, timeout: float) -> ModelResponse:
        """POST the payload (bytes, or a stream of ``length`` bytes sent in blocks) to /invocations."""
        headers = {"Content-Length": str(length)}
        if content_type:  # none: the container applies its own default, as on AWS
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        if custom_attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        try:
            conn.request("POST", "/invocations", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except socket.timeout:
            conn.close()
            raise InvocationTimedOut() from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise InstanceGone(str(exc)) from None
        return ModelResponse(response.status, data, response.getheader("Content-Type"))

    def stop(self, grace: float = 3.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
