"""``python flow.py run`` interrupted mid-scoring (Ctrl-C, SIGTERM), then ``python flow.py resume``: the
figures of the whole, measured as for the other faults. The flow is the integration tests' row-sum flow:
20 payloads of 10 rows, each taking 2 s, on one instance scoring 4 at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pandas as pd
import pytest

from mf_sm_async import AsyncEndpoint
from tests.integration.test_flows import FLOWS, ROOT, artifacts, run_flow

from .conftest import RunCheck, control, left_behind, measure, wait_for


@pytest.fixture
def flow_env(suite, tmp_path):
    """A Metaflow home of the test's own; the suite's emulator (MF_SM_ASYNC_HOME is inherited)."""
    return {**os.environ, "USERNAME": "tester", "METAFLOW_HOME": str(tmp_path / "metaflow"),
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(tmp_path / "datastore"),
            "METAFLOW_CARD_LOCALROOT": str(tmp_path / "cards")}


def received() -> dict[str, dict[str, int]]:
    """Requests received so far, per endpoint and inference id."""
    return {key.split("/", 1)[1]: dict(c.get("received_per_inference_id", {})) for key, c in control("counts").items()}


def new_requests(before: dict) -> dict[str, list[str]]:
    return {name: [i for i in ids if i not in before.get(name, {})] for name, ids in received().items()}


@pytest.mark.parametrize("how", ["SIGINT to the process group (Ctrl-C)", "SIGTERM to the process group"])
def test_a_flow_run_interrupted_then_resumed(flow_env, record, tmp_path, how):
    before = received()
    flow = subprocess.Popen([sys.executable, str(FLOWS / "rowsum_flow.py"), "run", "--rows", "200", "--slow", "5"],
                            env=flow_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        scoring = wait_for(lambda: next(((n, ids) for n, ids in new_requests(before).items() if len(ids) >= 4), None),
                           180, "the score step sending payloads", every=0.2)
        os.killpg(flow.pid, signal.SIGINT if how.startswith("SIGINT") else signal.SIGTERM)
        output = flow.communicate(timeout=120)[0]
    finally:
        if flow.poll() is None:
            os.killpg(flow.pid, signal.SIGKILL)
            flow.wait()
    assert flow.returncode != 0, output[-3000:]
    name = scoring[0]
    sent_before = len(new_requests(before)[name])
    [metaflow_run] = [p.name for p in (tmp_path / "datastore" / ".metaflow" / "RowSumFlow").iterdir() if p.name.isdigit()]
    ep = AsyncEndpoint.attach(name, hold=False)
    run_id = f"RowSumFlow-{metaflow_run}-score"        # the decorator's run id, which resume finds again
    # what the interrupted run left: the task's own teardown, no lease to wait out
    interrupted = left_behind([name], [RunCheck.of(ep, run_id, pd.DataFrame(), 10)], settle=20)

    done = run_flow(flow_env, str(FLOWS / "rowsum_flow.py"), "resume")
    assert done.returncode == 0, done.stderr[-3000:]
    data = artifacts(flow_env, tmp_path, "RowSumFlow", "score",
                     ["features", "predictions", "predictions_failures", "predictions_run"])
    assert data["predictions_run"] == run_id
    run = RunCheck.of(ep, run_id, data["features"], 10)
    run.received = {i: n for i, n in control("counts")[f"us-east-1/{name}"]["received_per_inference_id"].items()
                    if run.paths.part_key(i) and i not in before.get(name, {})}
    run.executed = {i: n for i, n in control("counts")[f"us-east-1/{name}"]["per_inference_id"].items()
                    if i in run.received}
    figures = record(measure(f"`python flow.py run` interrupted by {how}, then `resume`", [run], [name],
                             [(data["predictions"], data["predictions_failures"])],
                             notes=f"{sent_before} of 20 payloads sent before the signal; right after it "
                                   f"{sum(interrupted.values())} left behind (endpoint at zero, no model server, "
                                   "the run's queue deleted)",
                             numbers={"left_after_interrupt": interrupted}))
    assert interrupted == {k: 0 for k in interrupted}, interrupted
    figures.check()
