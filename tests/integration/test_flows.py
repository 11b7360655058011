"""Flows as a user runs them (``python flow.py run``, the Runner, ``--with``), on the emulator, in
temporary Metaflow home / datastore / card directories; artifacts read back with the Metaflow client."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mf_sm_async.local import daemon

ROOT = Path(__file__).resolve().parents[2]
FLOWS = Path(__file__).parent / "flows"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("mf")
    values = {**os.environ, "USERNAME": "tester", "METAFLOW_HOME": str(home / "metaflow"),
              "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(home / "datastore"),
              "METAFLOW_CARD_LOCALROOT": str(home / "cards"), "MF_SM_ASYNC_HOME": str(home / "mf-sm-async"),
              "MF_SM_ASYNC_TIME_SCALE": "60", "MF_SM_ASYNC_LEASE_TTL_SECONDS": "15"}
    values.pop("MF_SM_ASYNC_TARGET", None)
    yield values
    daemon.stop(home / "mf-sm-async" / "local")


def run_flow(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def artifacts(env: dict, tmp_path: Path, flow: str, step: str, names: list[str], run_id: str | None = None) -> dict:
    """Artifacts of a step's task, read with the Metaflow client in a process of its own (the client reads
    its datastore location from the environment at import)."""
    out = tmp_path / "artifacts.pickle"
    script = textwrap.dedent(f"""
        import pickle
        from metaflow import Flow, Run, namespace
        namespace(None)
        run = Run("{flow}/{run_id}") if {run_id!r} else Flow("{flow}").latest_run
        task = run["{step}"].task
        data = {{name: getattr(task.data, name) for name in {names!r}}}
        data["_run_id"], data["_successful"] = run.id, run.successful
        pickle.dump(data, open({str(out)!r}, "wb"))
    """)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return pickle.loads(out.read_bytes())


def card_text(html: str) -> str:
    """The components of a rendered card, as JSON text (the HTML carries them base64-encoded)."""
    import base64
    import re

    return "".join(base64.b64decode(m).decode() for m in re.findall(r'__MF_DATA__\["[^"]+"\] = "([^"]+)"', html))


def endpoints(env: dict) -> list[dict]:
    import boto3

    state = daemon.status(Path(env["MF_SM_ASYNC_HOME"]) / "local")
    if state is None:
        return []  # the flow has not started the emulator yet
    sm = boto3.client("sagemaker", endpoint_url=state["url"], region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    return [sm.describe_endpoint(EndpointName=e["EndpointName"]) for e in sm.list_endpoints()["Endpoints"]]


def test_the_digits_flow_scores_and_reports_accuracy(env, tmp_path):
    done = run_flow(env, "flows/digits_flow.py", "run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "accuracy 0.95" in done.stdout + done.stderr
    data = artifacts(env, tmp_path, "DigitsFlow", "end", ["features", "predictions", "predictions_metrics",
                                                           "predictions_failures", "labels", "accuracy"])
    assert data["predictions"].index.equals(data["features"].index)
    assert data["accuracy"] > 0.9 and data["predictions_failures"].empty
    assert data["predictions_metrics"]["rows"] == len(data["features"]) == 450
    # teardown="zero": the endpoint stays, at zero instances
    [endpoint] = endpoints(env)
    assert endpoint["ProductionVariants"][0]["DesiredInstanceCount"] == 0
    cards = run_flow(env, "flows/digits_flow.py", "card", "get", f"{data['_run_id']}/score", "--id",
                     "async_inference", str(tmp_path / "card.html"))
    assert cards.returncode == 0, cards.stderr
    card = card_text((tmp_path / "card.html").read_text())
    assert "**finished**: 450 of 450 rows done, 0 failed" in card and '"max": 450, "value": 450' in card


def test_failing_rows_are_listed_and_the_run_still_succeeds(env, tmp_path):
    done = run_flow(env, str(FLOWS / "rowsum_flow.py"), "run", "--rows", "100", "--poison", "7,42")
    assert done.returncode == 0, done.stderr[-3000:]
    data = artifacts(env, tmp_path, "RowSumFlow", "score", ["features", "predictions", "predictions_failures",
                                                            "predictions_metrics", "endpoint_seen"])
    assert list(data["predictions_failures"].index) == ["r7", "r42"]
    good = data["features"].drop(index=["r7", "r42"])
    np.testing.assert_allclose(data["predictions"].loc[good.index, "prediction"], good.to_numpy().sum(axis=1))
    assert data["predictions_metrics"]["rows_failed"] == 2 and data["endpoint_seen"].startswith("mfsa-")


def test_a_bad_decorator_argument_fails_at_start_naming_it(env, tmp_path):
    flow = tmp_path / "bad_flow.py"
    flow.write_text((FLOWS / "rowsum_flow.py").read_text().replace("max_in_flight=4", "max_in_flight=0")
                    .replace("os.path.dirname(__file__)", repr(str(FLOWS))))
    done = run_flow(env, str(flow), "run")
    assert done.returncode != 0
    assert "max_in_flight" in done.stderr and "an integer from 1" in done.stderr
    assert "Task is starting" not in done.stderr + done.stdout  # no step ran


def test_with_on_a_flow_that_does_not_import_us_and_the_runner_api(env, tmp_path):
    model = str(ROOT / "tests" / "conformance" / "models" / "rowsum")
    decorator = f"mf_sm_async.metaflow_ext.decorator.async_inference:model={model},rows_per_payload=2"
    # The Runner in a process of its own, as a notebook would use it (Metaflow reads its configuration
    # from the environment once, at import).
    script = textwrap.dedent(f"""
        from metaflow import Runner
        with Runner({str(FLOWS / "plain_flow.py")!r}, show_output=False).run(decospecs=[{decorator!r}]) as running:
            print(running.status, running.run.id)
    """)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    status, run_id = done.stdout.split()[-2:]
    assert status == "successful"
    data = artifacts(env, tmp_path, "PlainFlow", "score", ["predictions"], run_id=run_id)
    assert data["predictions"]["prediction"].tolist() == [11.0, 22.0, 33.0]


def model_servers(env: dict) -> list[str]:
    """Command lines of this test's model-server processes (their model dir is under its emulator home)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "mf_sm_async.local.model_server" in cmdline and env["MF_SM_ASYNC_HOME"] in cmdline:
            found.append(cmdline)
    return found


def wait_until(predicate, timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def scoring_started(env: dict) -> bool:
    return any(e["ProductionVariants"][0].get("CurrentInstanceCount", 0) > 0 for e in endpoints(env)) \
        and bool(model_servers(env))


def at_zero(env: dict) -> bool:
    return all(e["ProductionVariants"][0].get("DesiredInstanceCount", 0) == 0 for e in endpoints(env)) \
        and not model_servers(env)


@pytest.mark.parametrize("how", ["ctrl-c to the process group", "sigterm to the runtime alone", "@timeout"])
def test_an_interrupted_run_leaves_the_endpoint_at_zero(env, how):
    import signal
    import time

    extra = ["--with", "timeout:seconds=12"] if how == "@timeout" else []
    flow = subprocess.Popen([sys.executable, str(FLOWS / "rowsum_flow.py"), "run", "--rows", "400", "--slow", "5",
                             *extra], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_until(lambda: scoring_started(env), 120, "the score step deployed and started scoring")
        time.sleep(2)  # mid-scoring: 400 rows with every 5th taking 2 s need about 40 s
        if how.startswith("ctrl-c"):
            os.killpg(flow.pid, signal.SIGINT)   # what a terminal's Ctrl-C does
        elif how.startswith("sigterm"):
            os.kill(flow.pid, signal.SIGTERM)    # the runtime alone: its tasks live on
        else:
            assert flow.wait(timeout=120) != 0   # the step's @timeout fired mid-scoring
        # Ctrl-C and @timeout: the task's own teardown, well before its lease (15 s here) could expire;
        # SIGTERM to the runtime: whichever comes first, the task's teardown or the lease's expiry.
        wait_until(lambda: at_zero(env), 60 if how.startswith("sigterm") else 10,
                   "the endpoint at zero instances and no model server left")
    finally:
        try:
            os.killpg(flow.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        flow.wait()


def test_the_card_shows_progress_while_scoring(env, tmp_path):
    import re
    import time

    flow = subprocess.Popen([sys.executable, str(FLOWS / "rowsum_flow.py"), "run", "--rows", "800", "--slow", "4"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while flow.poll() is None and time.monotonic() < deadline:
            pathspec = _running_score_task(env)
            if pathspec:
                got = run_flow(env, str(FLOWS / "rowsum_flow.py"), "card", "get", pathspec, "--id",
                               "async_inference", str(tmp_path / "live.html"), timeout=60)
                if got.returncode == 0:
                    states = re.findall(r"\*\*(\w+)\*\*: ([\d,]+) of", card_text((tmp_path / "live.html").read_text()))
                    if states and (not seen or seen[-1] != states[-1]):
                        seen.append(states[-1])
            time.sleep(0.5)
        assert flow.wait(timeout=120) == 0, flow.stdout.read()[-3000:]
    finally:
        if flow.poll() is None:
            os.killpg(flow.pid, 9)
    intermediate = [s for s in seen if s[0] == "scoring" and s[1] not in ("0", "800")]
    assert len(set(intermediate)) >= 3, seen


def _running_score_task(env: dict) -> str | None:
    """``<run id>/score/<task id>`` of the newest RowSumFlow run's score task, once it exists."""
    root = Path(env["METAFLOW_DATASTORE_SYSROOT_LOCAL"]) / ".metaflow" / "RowSumFlow"
    runs = sorted((p for p in root.glob("*") if p.name.isdigit()), key=lambda p: p.stat().st_mtime) if root.exists() else []
    tasks = list((runs[-1] / "score").glob("*")) if runs else []
    return f"{runs[-1].name}/score/{tasks[0].name}" if tasks else None


def received(env: dict) -> dict[str, int]:
    """Requests the emulator received, per inference id, over all endpoints."""
    import json
    import urllib.request

    state = daemon.status(Path(env["MF_SM_ASYNC_HOME"]) / "local")
    if state is None:
        return {}
    with urllib.request.urlopen(f"{state['url']}/_mf_sm_async/counts") as response:
        counts = json.load(response)
    return {k: v for endpoint in counts.values() for k, v in endpoint.get("received_per_inference_id", {}).items()}


def score_task_pids(env: dict) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"step" in cmdline and b"score" in cmdline and env["MF_SM_ASYNC_HOME"].encode() in environ:
            pids.append(int(proc.name))
    return pids


@pytest.mark.parametrize("recovery", ["resume", "retry"])
def test_a_score_task_killed_mid_scoring_is_recovered_without_sending_any_part_twice(env, tmp_path, recovery):
    import signal

    before = received(env)
    args = ["run", "--rows", "400", "--slow", "5"] + (["--with", "retry:times=1,minutes_between_retries=0"]
                                                     if recovery == "retry" else [])
    flow = subprocess.Popen([sys.executable, str(FLOWS / "rowsum_flow.py"), *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until(lambda: len(received(env)) - len(before) >= 8, 180, "some parts sent")
    for pid in score_task_pids(env):
        os.kill(pid, signal.SIGKILL)                 # the task dies with parts in flight, no teardown
    output = flow.communicate(timeout=300)[0]
    if recovery == "resume":
        assert flow.returncode != 0, output[-2000:]
        done = run_flow(env, str(FLOWS / "rowsum_flow.py"), "resume")
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        assert flow.returncode == 0, output[-3000:]      # the retry finished the step
    sent = {k: v for k, v in received(env).items() if k not in before}
    assert len(sent) == 40 and set(sent.values()) == {1}, sent  # 400 rows / 10 per payload, each sent once
    data = artifacts(env, tmp_path, "RowSumFlow", "score", ["features", "predictions"])
    np.testing.assert_allclose(data["predictions"]["prediction"], data["features"].to_numpy().sum(axis=1))


def shard_tasks(env: dict, tmp_path: Path, flow: str) -> list[dict]:
    out = tmp_path / "shards.pickle"
    script = textwrap.dedent(f"""
        import pickle
        from metaflow import Flow, namespace
        namespace(None)
        tasks = Flow("{flow}").latest_run["score_shard"].tasks()
        pickle.dump([{{"index": t.index, "loaded": t.data.shard_artifacts_loaded}} for t in tasks],
                    open({str(out)!r}, "wb"))
    """)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return pickle.loads(out.read_bytes())


def test_the_step_type_scores_shards_in_a_foreach_and_gathers_them(env, tmp_path):
    done = run_flow(env, "flows/fanout_flow.py", "run", "--rows", "20000")
    assert done.returncode == 0, done.stderr[-3000:]
    data = artifacts(env, tmp_path, "FanoutFlow", "end", ["features", "predictions", "predictions_metrics",
                                                           "accuracy"])
    assert data["predictions"].index.equals(data["features"].index)
    assert data["accuracy"] > 0.95 and data["predictions_metrics"]["shards"] == 4
    assert data["predictions_metrics"]["rows"] == 20000 and data["predictions_metrics"]["rows_failed"] == 0
    shards = shard_tasks(env, tmp_path, "FanoutFlow")
    assert len(shards) == 4
    for shard in shards:  # each task loaded its own shard (and the shard results it made), not the input
        assert [a for a in shard["loaded"] if a.startswith("shard_") and a[6:].isdigit()] == [f"shard_{shard['index']}"]
        assert "features" not in shard["loaded"]


def test_a_failing_shard_fails_the_run_and_the_exit_hook_tears_down(env, tmp_path):
    done = run_flow(env, str(FLOWS / "fanout_rowsum_flow.py"), "run", "--poison", "150")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "poison row" in output and "scaled to zero after the failure" in output
    wait_until(lambda: at_zero(env), 30, "the endpoint at zero after the exit hook")


def test_a_bad_step_type_setting_stops_the_run_before_any_step(env, tmp_path):
    flow = tmp_path / "bad_fanout.py"
    flow.write_text((FLOWS / "fanout_rowsum_flow.py").read_text().replace('"shards": 3', '"shards": 0')
                    .replace("os.path.dirname(__file__)", repr(str(FLOWS))))
    done = run_flow(env, str(flow), "run")
    assert done.returncode != 0 and "inference['shards']=0 is invalid" in done.stderr
    assert "Task is starting" not in done.stdout + done.stderr


def test_an_exception_in_the_step_body_still_tears_down(env):
    done = run_flow(env, str(FLOWS / "rowsum_flow.py"), "run", "--fail", "True")
    assert done.returncode != 0 and "the step body failed on purpose" in done.stdout + done.stderr
    wait_until(lambda: at_zero(env), 10, "the endpoint at zero right after the failed step")
