"""The reliability suite: load and faults against one emulator daemon, each test measured the same way.

For every scenario three figures are taken from outside the client, never from what the client says of
itself:

- **rows lost**: input rows that came back neither with the right prediction (the row-sum model makes
  every answer checkable) nor as a reported failure;
- **duplicates**: rows the endpoint received in more than one request of the run (the emulator's
  per-inference-id counts) plus rows whose output is in S3 more than once;
- **left behind**: endpoints not back at zero instances, model-server processes, the runs' ``mfsa-run-*``
  SQS queues and their SNS subscriptions, and half-written results (output objects that do not hold exactly
  their payload's right answers, staged inputs left in S3). No payload here is big enough for a multipart
  upload (64 MiB), and the emulator's S3 cannot list unfinished ones, so those are not looked for.

Each test records its figures with the ``record`` fixture; at the end of the session they are merged into
``tests/reliability/.results.json`` (the README's table) and printed as a table.

The daemon runs at a time scale of 600 (an emulated minute is 0.1 s: alarms, cool-downs and request TTLs
pass in moments) and clients renew their leases with an 8 s time to live, so a killed client's endpoint
goes back to zero within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mf_sm_async import AsyncEndpoint, aws
from mf_sm_async.batch.plan import Part, split_part
from mf_sm_async.batch.run import QUEUE_PREFIX, RunPaths
from mf_sm_async.local import daemon

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "conformance" / "models" / "rowsum"
RESULTS = Path(__file__).parent / ".results.json"
TIME_SCALE = 600.0
LEASE_TTL_SECONDS = 8
POISON, SLOW = -999.0, -555.0   # what the row-sum model fails on / sleeps 2 s on (see its inference.py)

_measured: list[dict] = []


# the emulator -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def suite(tmp_path_factory):
    """One daemon for the session, found by every process the tests start through MF_SM_ASYNC_HOME."""
    home = tmp_path_factory.mktemp("reliability")
    overrides = {"MF_SM_ASYNC_HOME": str(home / "mf-sm-async"), "MF_SM_ASYNC_TIME_SCALE": str(TIME_SCALE),
                 "MF_SM_ASYNC_LEASE_TTL_SECONDS": str(LEASE_TTL_SECONDS)}
    saved = {k: os.environ.get(k) for k in [*overrides, "MF_SM_ASYNC_TARGET"]}
    os.environ.update(overrides)
    os.environ.pop("MF_SM_ASYNC_TARGET", None)
    state_dir = daemon.default_state_dir()
    daemon.start(state_dir, time_scale=TIME_SCALE)
    yield Suite(home, state_dir)
    daemon.stop(state_dir)
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@dataclass
class Suite:
    home: Path
    state_dir: Path

    def restart(self) -> None:
        daemon.start(self.state_dir, time_scale=TIME_SCALE)


def control(route: str, body: dict | None = None, method: str | None = None) -> dict:
    """The emulator's control API (faults, counts)."""
    request = urllib.request.Request(f"{aws.local_endpoint_url()}/_mf_sm_async/{route}",
                                     method=method or ("POST" if body is not None else "GET"),
                                     data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def counts(name: str) -> dict:
    return control("counts").get(f"us-east-1/{name}", {})


def deploy(**options) -> AsyncEndpoint:
    """The row-sum model on an endpoint that scales 0..2 (re-used by every test that asks for the same)."""
    settings = {"max_instances": 2, "initial_instances": 1, "min_instances": 0,
                "max_concurrent_invocations_per_instance": 4, "teardown": "zero", **options}
    return AsyncEndpoint.deploy(model=str(MODEL), **settings)


def frame(rows: int, *, columns: int = 4, seed: int = 0, slow_every: int = 0, poison: tuple[int, ...] = ()) -> pd.DataFrame:
    """Random rows indexed ``r0..``; every ``slow_every``-th row makes its payload take 2 s, ``poison`` rows fail."""
    values = np.random.default_rng(seed).normal(size=(rows, columns))
    df = pd.DataFrame(values, columns=[f"f{n}" for n in range(columns)], index=[f"r{n}" for n in range(rows)])
    if slow_every:
        df.iloc[::slow_every, 1] = SLOW
    for position in poison:
        df.iloc[position, 0] = POISON
    return df


def row_sums(df: pd.DataFrame) -> np.ndarray:
    return np.ascontiguousarray(df.to_numpy()).sum(axis=1)


# the three figures ------------------------------------------------------------------------------
def rows_lost(df: pd.DataFrame, predictions: pd.DataFrame, failures: pd.DataFrame) -> int:
    """Rows neither answered right nor reported failed (a misaligned answer counts as lost)."""
    got = predictions["prediction"].to_numpy(dtype=float)
    right = np.isclose(got, row_sums(df), rtol=1e-12, atol=0.0)
    reported = df.index.isin(failures.index)
    return int((~right & ~reported).sum())


def part_of(key: str, rows: int, rows_per_payload: int) -> Part:
    """The rows a part key names: the planned part ``NNNNN``, or a piece of it after splits (``NNNNN.0.1``)."""
    head, *path = key.split(".")
    number = int(head)
    part = Part(number, number * rows_per_payload, min((number + 1) * rows_per_payload, rows))
    for step in path:
        part = split_part(part)[int(step)]
    return part


@dataclass
class RunCheck:
    """What the endpoint and S3 saw of one run (``paths`` from the endpoint it ran on)."""
    paths: RunPaths
    df: pd.DataFrame
    rows_per_payload: int
    received: dict[str, int] = field(default_factory=dict)   # inference id -> requests received
    executed: dict[str, int] = field(default_factory=dict)   # inference id -> model executions

    @classmethod
    def of(cls, ep: AsyncEndpoint, run_id: str, df: pd.DataFrame, rows_per_payload: int) -> "RunCheck":
        r = ep.resources
        return cls(RunPaths(run_id, r.bucket, r.prefix, r.output_path, r.failure_path), df, rows_per_payload)

    def take_counts(self, name: str, minus: set[str] = frozenset()) -> None:
        """Add the emulator's counts for this run (``minus``: ids the emulator restored after a restart:
        counted again by the new daemon, but not sent again by anyone)."""
        now = counts(name)
        for source, target in (("received_per_inference_id", self.received), ("per_inference_id", self.executed)):
            for inference_id, n in now.get(source, {}).items():
                if self.paths.part_key(inference_id) is not None:
                    target[inference_id] = target.get(inference_id, 0) + n - (inference_id in minus)

    def rows_of(self, inference_id: str) -> int:
        return part_of(self.paths.part_key(inference_id), len(self.df), self.rows_per_payload).rows

    def duplicate_sends(self) -> int:
        return sum(self.rows_of(i) * (n - 1) for i, n in self.received.items() if n > 1)

    def re_executions(self) -> int:
        return sum(n - 1 for i, n in self.executed.items() if n > self.received.get(i, 1))

    def outputs(self) -> tuple[np.ndarray, int]:
        """Per row, how many output objects in S3 hold it (each checked against the expected sums), and how
        many output objects are half-written (unreadable, or the wrong rows)."""
        s3 = aws.client("s3")
        bucket, folder = self.paths.output_folder[5:].split("/", 1)
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
                for o in page.get("Contents", [])]
        expected, coverage = row_sums(self.df), np.zeros(len(self.df), dtype=int)

        def check(key: str) -> tuple[Part | None, bool]:
            part_key = self.paths.part_key(key.rsplit("/", 1)[1].removesuffix(".out"))
            if part_key is None:
                return None, False
            part = part_of(part_key, len(self.df), self.rows_per_payload)
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
                values = np.array([json.loads(line) for line in body.splitlines() if line.strip()], dtype=float)
            except (ValueError, UnicodeDecodeError):
                return part, False
            return part, len(values) == part.rows and np.allclose(values, expected[part.start:part.stop], rtol=1e-12)

        half_written = 0
        with ThreadPoolExecutor(16) as pool:
            for part, ok in pool.map(check, keys):
                if part is None or not ok:
                    half_written += 1
                else:
                    coverage[part.start:part.stop] += 1
        return coverage, half_written


def left_behind(endpoints: list[str], runs: list[RunCheck], *, settle: float = 60.0) -> dict[str, int]:
    """What is still there once things have had ``settle`` seconds to go back to rest (teardowns done,
    leases of killed holders expired: the emulator then scales their endpoint to zero)."""
    deadline = time.monotonic() + settle
    while True:
        found = _leftovers(endpoints, runs)
        if not any(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _leftovers(endpoints: list[str], runs: list[RunCheck]) -> dict[str, int]:
    sagemaker, sqs, sns, s3 = (aws.client(s) for s in ("sagemaker", "sqs", "sns", "s3"))
    found = {"endpoints not at zero": 0, "model servers": 0, "run queues": 0, "run subscriptions": 0,
             "half-written objects": 0}
    for name in endpoints:
        variant = sagemaker.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
        found["endpoints not at zero"] += bool(variant.get("CurrentInstanceCount") or variant.get("DesiredInstanceCount"))
        found["model servers"] += len(model_servers(name))
    queues = {run.paths.queue_name for run in runs}
    found["run queues"] = len([u for u in sqs.list_queues(QueueNamePrefix=QUEUE_PREFIX).get("QueueUrls", [])
                               if u.rsplit("/", 1)[1] in queues])
    subscriptions = [s for page in sns.get_paginator("list_subscriptions").paginate() for s in page["Subscriptions"]]
    found["run subscriptions"] = len([s for s in subscriptions if s["Endpoint"].rsplit(":", 1)[-1] in queues])
    for run in runs:
        bucket = run.paths.bucket
        found["half-written objects"] += len(s3.list_objects_v2(Bucket=bucket, Prefix=f"{run.paths.prefix}/in/")
                                             .get("Contents", []))
    return found


def model_servers(endpoint: str) -> list[int]:
    """Pids of live model-server processes serving ``endpoint`` (their model dir names it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if "mf_sm_async.local.model_server" in cmdline and f"/{endpoint}/model/" in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


@dataclass
class Figures:
    fault: str
    rows: int
    rows_lost: int
    duplicates: int
    left_behind: dict[str, int]
    notes: str = ""
    numbers: dict = field(default_factory=dict)

    @property
    def left(self) -> int:
        return sum(self.left_behind.values())

    def check(self) -> None:
        assert (self.rows_lost, self.duplicates, self.left) == (0, 0, 0), self


def measure(fault: str, runs: list[RunCheck], endpoints: list[str], predictions: list[tuple], *,
            notes: str = "", numbers: dict | None = None, settle: float = 60.0) -> Figures:
    """The three figures of a scenario over its ``runs`` (each with its (predictions, failures) in
    ``predictions``, same order)."""
    lost = dup = half = 0
    for run, (pred, failures) in zip(runs, predictions):
        coverage, half_written = run.outputs()
        # as the user sees it (the result), and as S3 holds it: a row neither holds nor reports is lost
        unreported = ~run.df.index.isin(failures.index)
        lost += max(rows_lost(run.df, pred, failures), int(((coverage == 0) & unreported).sum()))
        dup += int(np.clip(coverage - 1, 0, None).sum()) + run.duplicate_sends()
        half += half_written
    leftovers = left_behind(endpoints, runs, settle=settle)
    leftovers["half-written objects"] += half
    re_run = sum(r.re_executions() for r in runs)
    extra = (f"; {re_run} request(s) run twice by the endpoint (an instance or the daemon died under them: "
             "at least once, as on AWS)") if re_run else ""
    return Figures(fault, sum(len(r.df) for r in runs), lost, dup, leftovers, notes + extra, numbers or {})


@pytest.fixture
def record():
    """``record(figures)``: keep them for the session's table (then assert them in the test)."""
    def _record(figures: Figures) -> Figures:
        _measured.append({"fault": figures.fault, "rows": figures.rows, "rows_lost": figures.rows_lost,
                          "duplicates": figures.duplicates, "left_behind": figures.left,
                          "left_behind_detail": {k: v for k, v in figures.left_behind.items() if v},
                          "notes": figures.notes, "numbers": figures.numbers,
                          "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return figures
    return _record


def _merged() -> list[dict]:
    """The figures of every scenario ever measured here, the latest of each (this session's included)."""
    try:
        rows = {row["fault"]: row for row in json.loads(RESULTS.read_text())}
    except (OSError, ValueError):
        rows = {}
    rows.update({row["fault"]: row for row in _measured})
    return list(rows.values())


def pytest_sessionfinish(session, exitstatus):
    if _measured:
        RESULTS.write_text(json.dumps(_merged(), indent=1) + "\n")


def pytest_terminal_summary(terminalreporter):
    """The README's table: every scenario in .results.json, this session's figures where it measured them."""
    if not _measured:
        return
    write = terminalreporter.write_line
    write("")
    write("| fault | rows | rows lost | duplicates | left behind | notes |")
    write("|---|---|---|---|---|---|")
    for row in json.loads(RESULTS.read_text()) if RESULTS.exists() else _measured:
        left = f"{row['left_behind']}" + (f" ({row['left_behind_detail']})" if row["left_behind_detail"] else "")
        write(f"| {row['fault']} | {row['rows']:,} | {row['rows_lost']} | {row['duplicates']} | {left} | {row['notes']} |")


# clients in processes of their own -----------------------------------------------------------------
def cli(*args: str, **popen) -> subprocess.Popen:
    """``mf-sm-async ARGS`` as a user's shell runs it (the same environment, this worktree first)."""
    return subprocess.Popen([sys.executable, "-m", "mf_sm_async.cli", *args], cwd=ROOT, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def predict_cli(ep: AsyncEndpoint, df_path: Path, out: Path, run_id: str, rows_per_payload: int, *extra: str):
    return cli("predict", "--endpoint", ep.name, "--input", str(df_path), "--output", str(out), "--run-id", run_id,
               "--rows-per-payload", str(rows_per_payload), *extra)


def read_output(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the predict command wrote: the predictions and the failures (when any)."""
    failures = out.with_name(out.stem + ".failures.csv")
    return (pd.read_parquet(out),
            pd.read_csv(failures, index_col=0) if failures.exists() else pd.DataFrame(index=pd.Index([], dtype=object)))


def wait_for(predicate, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def sent(ep: AsyncEndpoint, run: RunCheck) -> int:
    """Requests of ``run`` the endpoint has received so far."""
    return len([i for i in counts(ep.name).get("received_per_inference_id", {}) if run.paths.part_key(i)])


def kill(process: subprocess.Popen, signum: int = signal.SIGKILL) -> None:
    try:
        os.kill(process.pid, signum)
    except ProcessLookupError:
        pass
