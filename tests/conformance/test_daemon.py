"""The emulator daemon as users' processes share it: one per state directory, out of reach of Ctrl-C,
and nothing left running after `mf-sm-async local stop`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mf_sm_async.local import daemon
from mf_sm_async.local.daemon import pid_alive

from .conftest import Clients, create_deployment
from .test_endpoint_lifecycle import serving_pids, wait_for

CLI = [sys.executable, "-m", "mf_sm_async.cli"]


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    yield path
    daemon.stop(path)


def processes_with(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (what `pgrep -f` does, without needing procps)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def cli(*args: str, state_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, "local", *args, "--state-dir", str(state_dir)], capture_output=True,
                            text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_concurrent_starts_end_with_one_daemon(state_dir):
    code = f"from mf_sm_async.local import daemon; print(daemon.start({str(state_dir)!r})['pid'])"
    starters = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(6)]
    pids = {int(p.communicate(timeout=60)[0]) for p in starters}
    assert len(pids) == 1
    [pid] = pids
    assert processes_with(f"mf_sm_async.local.daemon serve --state-dir {state_dir}") == [pid]


def test_ctrl_c_in_the_users_terminal_does_not_kill_the_daemon(state_dir):
    code = (f"import time; from mf_sm_async.local import daemon; print(daemon.start({str(state_dir)!r})['pid'], "
            "flush=True); time.sleep(60)")
    user = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    pid = int(user.stdout.readline())
    os.killpg(user.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    user.wait(timeout=10)
    assert daemon.status(state_dir)["pid"] == pid


def test_start_reuses_status_reports_and_stop_leaves_no_process(state_dir, tmp_path):
    url = cli("start", state_dir=state_dir).stdout.strip()
    assert url.startswith("http://127.0.0.1:")
    assert cli("start", state_dir=state_dir).stdout.strip() == url
    state = json.loads(cli("status", state_dir=state_dir).stdout)
    dep = create_deployment(Clients(url), tmp_path, instances=2, max_concurrent=1)
    model_pids = serving_pids(dep, 6)
    assert len(model_pids) == 2

    assert cli("stop", state_dir=state_dir).stdout.strip() == "stopped"
    assert not pid_alive(state["pid"])
    assert not processes_with(str(state_dir))  # the object store (rclone) stopped with it
    wait_for(lambda: not any(pid_alive(p) for p in model_pids), timeout=5, what="model servers to exit")
    status = cli("status", state_dir=state_dir, check=False)
    assert status.returncode == 1 and status.stdout.strip() == "not running"


def test_model_servers_die_with_a_killed_daemon(state_dir, tmp_path):
    state = daemon.start(state_dir)
    dep = create_deployment(Clients(state["url"]), tmp_path)
    [model_pid] = serving_pids(dep, 1)
    assert processes_with(f"serve s3 {state_dir}")  # the object store runs beside the daemon
    os.kill(state["pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(model_pid), timeout=10, what="orphaned model server to exit")
    wait_for(lambda: not processes_with(str(state_dir)), timeout=10, what="every process of the daemon to exit")


def test_local_env_points_unmodified_clients_at_the_emulator(state_dir):
    exports = cli("env", state_dir=state_dir).stdout
    state = daemon.status(state_dir)
    assert f"export AWS_ENDPOINT_URL={state['url']}" in exports.splitlines()
    script = exports + "\n" + f"{sys.executable} -c 'import boto3; boto3.client(\"s3\").create_bucket(Bucket=\"env-check\"); " \
                              "print(boto3.client(\"s3\").list_buckets()[\"Buckets\"][0][\"Name\"])'"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
    assert result.stdout.strip() == "env-check", result.stderr


def test_a_second_daemon_on_the_same_state_dir_is_refused(state_dir):
    daemon.start(state_dir)
    result = subprocess.run([*CLI, "local", "serve", "--state-dir", str(state_dir)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "another emulator daemon already serves" in result.stderr
