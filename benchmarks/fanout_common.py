"""What the fan-out benchmarks share: a daemon of their own, the test models, the model servers' ports,
plain boto3 clients, and peak-memory readings of a child process.

Each benchmark runs inside :func:`own_emulator`: a temporary ``MF_SM_ASYNC_HOME`` (so ``AsyncEndpoint``
starts and finds a daemon of its own, never a user's), stopped at the end with every model server, and
the directory removed. Endpoints are deployed with ``teardown="delete"`` and a fixed instance count
(min = initial = max), so autoscaling cannot change the fleet during a measurement.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

HERE = Path(__file__).parent
ROWSUM_MODEL = HERE.parent / "tests" / "conformance" / "models" / "rowsum"  # each row's output: its sum


@contextlib.contextmanager
def own_emulator(time_scale: float | None = None):
    """A fresh daemon in a temporary MF_SM_ASYNC_HOME; yields (home, daemon state). Stops the daemon
    (and so its model servers) and removes the directory on the way out, even after an error."""
    from mf_sm_async.local import daemon

    home = Path(tempfile.mkdtemp(prefix="mfsa-fanout-"))
    previous = os.environ.get("MF_SM_ASYNC_HOME")
    os.environ["MF_SM_ASYNC_HOME"] = str(home)
    state_dir = home / "local"
    pids: list[int] = []
    try:
        state = daemon.start(state_dir, time_scale=time_scale)
        pids.append(state["pid"])
        yield home, state
    finally:
        with contextlib.suppress(Exception):
            pids += [p for row in counts().values() for p in row["pids"]]
        daemon.stop(state_dir)
        _wait_gone(pids)
        if previous is None:
            os.environ.pop("MF_SM_ASYNC_HOME", None)
        else:
            os.environ["MF_SM_ASYNC_HOME"] = previous
        shutil.rmtree(home, ignore_errors=True)


def _wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    from mf_sm_async.local.daemon import pid_alive

    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if pid_alive(p)]
    if left:
        print(f"warning: processes still alive after the daemon stopped: {left}")


def deploy(model, *, instances: int, concurrency: int):
    """An endpoint of exactly ``instances`` instances x ``concurrency`` invocations, deleted at teardown."""
    from mf_sm_async import AsyncEndpoint

    return AsyncEndpoint.deploy(model=str(model), min_instances=instances, initial_instances=instances,
                                max_instances=instances, max_concurrent_invocations_per_instance=concurrency,
                                teardown="delete")


def counts() -> dict:
    """The daemon's per-endpoint counts (never starts a daemon: empty when none runs)."""
    from mf_sm_async.local import daemon

    state = daemon.status()
    if state is None:
        return {}
    with urllib.request.urlopen(f"{state['url']}/_mf_sm_async/counts", timeout=10) as response:
        return json.load(response)


def model_server_ports(ep, state_dir: Path) -> list[int]:
    """The ports of the endpoint's running model-server processes (from their logs' first line)."""
    pids = set(counts()[f"us-east-1/{ep.name}"]["pids"])
    listening = re.compile(r"listening on http://127\.0\.0\.1:(\d+) pid=(\d+)")
    ports = []
    for log in (state_dir / "endpoints").rglob("i-*.log"):
        match = listening.search(log.read_text(errors="replace"))
        if match and int(match.group(2)) in pids:
            ports.append(int(match.group(1)))
    if len(ports) != len(pids):
        raise RuntimeError(f"found {len(ports)} model-server ports for {len(pids)} running instances")
    return sorted(ports)


def boto3_clients(pool: int = 10) -> dict:
    """Plain boto3 clients on the emulator, as a user gets them after `eval "$(mf-sm-async local env)"`:
    default retries, nothing of ours."""
    from mf_sm_async import aws

    env = aws.local_env(aws.local_endpoint_url())
    config = Config(max_pool_connections=pool)
    return {s: boto3.client(s, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], config=config)
            for s in ("s3", "sagemaker-runtime", "sqs", "sns")}


def byte_count_model(directory: Path) -> Path:
    """A directory model that answers the byte count of its payload (the input arrives whole, as the
    container contract gives it to input_fn)."""
    code = directory / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "inference.py").write_text(textwrap.dedent('''\
        import json


        def model_fn(model_dir):
            return None


        def input_fn(input_data, content_type):
            return len(input_data)


        def predict_fn(data, model):
            return data


        def output_fn(prediction, accept):
            return json.dumps({"bytes": prediction}), "application/json"
        '''))
    return directory


# memory of this process, read by a child about itself --------------------------------------------

def proc_status_kb(field: str, pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: ``echo 5 > /proc/self/clear_refs``), so a
    peak reached while building the input does not count; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def mb(n_bytes: float) -> float:
    return n_bytes / 2**20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
