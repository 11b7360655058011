"""Faults during ``ep.predict``, each injected through the emulator's control API or by killing (or
stopping) real processes, never by patching the client; each measured for rows lost, duplicates and what is
left behind (see conftest), which must all be zero."""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mf_sm_async.local import daemon

from .conftest import (LEASE_TTL_SECONDS, SLOW, RunCheck, control, counts, deploy, frame, kill, measure, model_servers, predict_cli,
                       read_output, sent, wait_for)


def in_flight(name: str) -> bool:
    now = counts(name)
    return bool(now.get("pids")) and now["backlog"] > now["queued"]


def test_a_model_server_process_killed_mid_request(suite, record):
    df = frame(2_000, slow_every=100, seed=1)          # every other payload takes 2 s: always some in flight
    with deploy() as ep:
        run = RunCheck.of(ep, "instance-killed", df, 50)
        deaths = counts(ep.name).get("instance_deaths", 0)
        with ThreadPoolExecutor(1) as pool:
            scoring = pool.submit(ep.predict, df, rows_per_payload=50, run_id=run.paths.run_id, progress=False)
            killed: list[int] = []
            for _ in range(2):  # every live instance, twice, each time with requests on it
                wait_for(lambda: in_flight(ep.name) and set(counts(ep.name)["pids"]) - set(killed), 120,
                         "requests in flight on a live instance")
                for pid in set(counts(ep.name)["pids"]) - set(killed):
                    killed.append(control("kill-instance", {"endpoint": ep.name, "pid": pid})["killed"])
            result = scoring.result(timeout=300)
        run.take_counts(ep.name)
        died = counts(ep.name)["instance_deaths"] - deaths
    figures = record(measure("model-server process killed mid-request (SIGKILL, twice)", [run], [ep.name],
                             [(result.predictions, result.failures)],
                             notes=f"{len(killed)} instances killed with requests on them; {died} replaced",
                             numbers={"killed": len(killed), "seconds": round(result.metrics.seconds, 1)}))
    assert died >= 2 and result.failures.empty, result.failures
    figures.check()


def test_the_model_raising_on_some_payloads(suite, record):
    poison = (7, 444, 1_503)
    df = frame(2_000, seed=2, poison=poison)
    with deploy() as ep:
        run = RunCheck.of(ep, "model-raises", df, 50)
        result = ep.predict(df, rows_per_payload=50, run_id=run.paths.run_id, progress=False)
        run.take_counts(ep.name)
    figures = record(measure("model raises on some payloads (3 poison rows)", [run], [ep.name],
                             [(result.predictions, result.failures)],
                             notes=f"exactly the {len(poison)} poison rows reported failed, with the model's error; "
                                   f"{result.metrics.payloads} requests for 40 payloads (failed ones split)"))
    assert list(result.failures.index) == [f"r{n}" for n in poison]
    assert result.failures["error"].str.contains("poison row").all()
    figures.check()


def test_a_model_hanging_on_some_rows_past_the_invocation_timeout(suite, record):
    df = frame(1_000, seed=3)
    hanging = [137, 555, 901]
    df.iloc[hanging, 1] = SLOW                           # the model takes 2 s on these, the timeout is 1 s
    with deploy() as ep:
        run = RunCheck.of(ep, "model-hangs", df, 50)
        result = ep.predict(df, rows_per_payload=50, invocation_timeout_seconds=1, run_id=run.paths.run_id,
                            progress=False)
        run.take_counts(ep.name)
    figures = record(measure("model hangs on some rows past InvocationTimeoutSeconds (1 s)", [run], [ep.name],
                             [(result.predictions, result.failures)],
                             notes=f"the {len(hanging)} hanging rows reported failed (timed out), every other row "
                                   "answered"))
    assert list(result.failures.index) == [f"r{n}" for n in hanging]
    assert result.failures["error"].str.contains("InvocationTimeoutSeconds").all(), result.failures["error"].tolist()
    figures.check()


def test_a_model_server_frozen_past_the_invocation_timeout(suite, record):
    df = frame(3_000, seed=4)
    with deploy() as ep:
        run = RunCheck.of(ep, "instance-frozen", df, 50)
        failed_before = counts(ep.name).get("failed", 0)
        with ThreadPoolExecutor(1) as pool:
            scoring = pool.submit(ep.predict, df, rows_per_payload=50, invocation_timeout_seconds=1, max_in_flight=32,
                                  run_id=run.paths.run_id, progress=False)
            wait_for(lambda: in_flight(ep.name), 120, "requests in flight")
            frozen = control("hang-instance", {"endpoint": ep.name, "seconds": 4})["hung"]
            result = scoring.result(timeout=300)
        run.take_counts(ep.name)
        timed_out = counts(ep.name)["failed"] - failed_before
    figures = record(measure("model-server process frozen (SIGSTOP) 4 s, past InvocationTimeoutSeconds (1 s)", [run],
                             [ep.name], [(result.predictions, result.failures)],
                             notes=f"{timed_out} requests timed out on the frozen process and were split and sent "
                                   f"again; {len(result.failures)} rows reported failed",
                             numbers={"timed_out_requests": timed_out, "frozen_pid": frozen}))
    assert timed_out >= 1
    figures.check()


def test_requests_expiring_by_ttl_while_the_endpoint_has_no_capacity(suite, record):
    df = frame(200, seed=5)
    with deploy() as ep:
        ep.scale_to_zero()
        wait_for(lambda: not counts(ep.name)["pids"] and not model_servers(ep.name), 60, "the endpoint at zero")
        run = RunCheck.of(ep, "ttl-at-zero", df, 20)
        # 60 s (the shortest TTL SageMaker takes) is 0.1 s here: far shorter than an instance's cold start
        result = ep.predict(df, rows_per_payload=20, request_ttl_seconds=60, run_id=run.paths.run_id, progress=False)
        run.take_counts(ep.name)
    figures = record(measure("requests expire by TTL while at zero capacity", [run], [ep.name],
                             [(result.predictions, result.failures)],
                             notes=f"all {len(df)} rows reported failed as expired, none lost; "
                                   f"{result.metrics.payloads} requests (expired payloads are not split)"))
    assert len(result.failures) == len(df) and result.metrics.payloads == 10
    assert result.failures["error"].str.contains("expired").all(), result.failures["error"].tolist()
    figures.check()


def test_s3_slowdown_and_throttling_bursts(suite, record):
    # 200 rows x 40 floats: every payload is uploaded to S3 first; every other one takes 2 s to score
    df = frame(8_000, columns=40, slow_every=400, seed=6)
    with deploy() as ep:
        run = RunCheck.of(ep, "bursts", df, 200)
        hits_before = control("faults")["hits"]
        with ThreadPoolExecutor(1) as pool:
            scoring = pool.submit(ep.predict, df, rows_per_payload=200, max_in_flight=8, run_id=run.paths.run_id,
                                  progress=False)
            wait_for(lambda: sent(ep, run) >= 4, 120, "the run under way")
            # 3 s in which every invocation answers ThrottlingException, then 3 s in which every S3 request
            # of the bucket (uploads, the journal, listings, leases) answers 503 SlowDown
            control("faults", {"kind": "throttle", "seconds": 3, "endpoint": ep.name})
            time.sleep(3)
            control("faults", {"kind": "s3_slowdown", "seconds": 3, "bucket": ep.resources.bucket})
            result = scoring.result(timeout=300)
        hits = {k: v - hits_before.get(k, 0) for k, v in control("faults")["hits"].items()}
        run.take_counts(ep.name)
    figures = record(measure("3 s of SageMaker ThrottlingException, then 3 s of S3 503 SlowDown, mid-run", [run],
                             [ep.name], [(result.predictions, result.failures)],
                             notes=f"{hits.get('s3_slowdown', 0)} SlowDown and {hits.get('throttle', 0)} "
                                   "ThrottlingException answers, all retried; no row failed",
                             numbers={"slowdowns": hits.get("s3_slowdown", 0), "throttles": hits.get("throttle", 0),
                                      "seconds": round(result.metrics.seconds, 1)}))
    assert hits.get("s3_slowdown", 0) >= 1 and hits.get("throttle", 0) >= 1 and result.failures.empty
    figures.check()


def test_every_notification_lost(suite, record):
    df = frame(2_000, seed=7)
    with deploy() as ep:
        run = RunCheck.of(ep, "notifications-lost", df, 50)
        control("faults", {"kind": "lose_notification", "count": 100_000, "endpoint": ep.name})
        try:
            result = ep.predict(df, rows_per_payload=50, run_id=run.paths.run_id, progress=False)
            [armed] = control("faults")["armed"]
        finally:
            control("faults", method="DELETE")
        run.take_counts(ep.name)
    lost_notes = 100_000 - armed["remaining"]
    figures = record(measure("every SNS notification lost (ListObjectsV2 fallback)", [run], [ep.name],
                             [(result.predictions, result.failures)],
                             notes=f"{lost_notes} notifications dropped; all 40 payloads found by listing",
                             numbers={"seconds": round(result.metrics.seconds, 1)}))
    assert lost_notes >= 40 and result.failures.empty
    figures.check()


def test_the_client_process_killed_and_resumed_later(suite, record, tmp_path):
    df = frame(1_000, slow_every=25, seed=8)           # every payload takes 2 s: some in flight at the kill
    df.to_parquet(tmp_path / "in.parquet")
    with deploy() as ep:
        run = RunCheck.of(ep, "client-killed", df, 25)
        client = predict_cli(ep, tmp_path / "in.parquet", tmp_path / "out.parquet", run.paths.run_id, 25,
                             "--max-in-flight", "8")
        wait_for(lambda: sent(ep, run) >= 6, 120, "some payloads sent")
        kill(client)                                   # SIGKILL: no teardown, no queue deleted, nothing flushed
        client.communicate(timeout=60)
        before = sent(ep, run)
        # Someone else's run on the endpoint, once the killed run's lease has expired: it removes the dead
        # run's queue (which would otherwise collect every notification of the endpoint for a day).
        time.sleep(LEASE_TTL_SECONDS + 1)
        assert queue_exists(run)
        other = ep.predict(frame(100, seed=13), rows_per_payload=50, progress=False)
        assert other.failures.empty and not queue_exists(run)
        resumed = predict_cli(ep, tmp_path / "in.parquet", tmp_path / "out.parquet", run.paths.run_id, 25,
                              "--max-in-flight", "8", "--resume")
        _, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err[-3000:]
        run.take_counts(ep.name)
    predictions, failures = read_output(tmp_path / "out.parquet")
    figures = record(measure("client process SIGKILLed mid-run, resume=True after another run", [run], [ep.name],
                             [(predictions, failures)],
                             notes=f"{before} of 40 payloads sent before the kill, the rest by the resumed run; the "
                                   "dead run's queue removed by the next run on the endpoint (its lease had expired), "
                                   "so the resumed run found the earlier outcomes by listing"))
    assert 6 <= before < 40
    figures.check()


def queue_exists(run: RunCheck) -> bool:
    from mf_sm_async import aws

    urls = aws.client("sqs").list_queues(QueueNamePrefix=run.paths.queue_name).get("QueueUrls", [])
    return any(u.endswith("/" + run.paths.queue_name) for u in urls)


def test_the_client_killed_between_the_journal_write_and_the_sends(suite, record, tmp_path):
    """The narrowest crash: the wave is in the journal, its requests are not at the endpoint yet (here they
    are being throttled). The resumed run must neither wait for them until their deadline (TTL + timeout)
    nor send twice what did arrive: the emulator says which arrived."""
    from mf_sm_async import aws

    df = frame(1_000, seed=12)
    df.to_parquet(tmp_path / "in.parquet")
    with deploy() as ep:
        run = RunCheck.of(ep, "killed-before-sending", df, 50)
        control("faults", {"kind": "throttle", "seconds": 120, "endpoint": ep.name})
        try:
            client = predict_cli(ep, tmp_path / "in.parquet", tmp_path / "out.parquet", run.paths.run_id, 50)
            journal = f"{run.paths.prefix}/journal/"
            wait_for(lambda: aws.client("s3").list_objects_v2(Bucket=run.paths.bucket, Prefix=journal).get("KeyCount"),
                     120, "the first wave in the journal")
            kill(client)
            client.communicate(timeout=60)
        finally:
            control("faults", method="DELETE")
        entries = [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=run.paths.bucket, Prefix=journal)["Contents"]]
        before = sent(ep, run)
        started = time.monotonic()
        resumed = predict_cli(ep, tmp_path / "in.parquet", tmp_path / "out.parquet", run.paths.run_id, 50, "--resume")
        _, err = resumed.communicate(timeout=300)
        seconds = time.monotonic() - started
        assert resumed.returncode == 0, err[-3000:]
        run.take_counts(ep.name)
    figures = record(measure("client SIGKILLed between the journal write and the sends, then resume=True", [run],
                             [ep.name], [read_output(tmp_path / "out.parquet")],
                             notes=f"{len(entries)} journal entry without answers, {before} of its requests at the "
                                   f"endpoint; the resumed run asked the emulator and sent them at once "
                                   f"({seconds:.1f}s, not the 1 h 16 min deadline)",
                             numbers={"resume_seconds": round(seconds, 1)}))
    assert not any(k.endswith(".sent.json") for k in entries) and before == 0
    assert len(run.received) == 20 and set(run.received.values()) == {1}
    figures.check()


CLIENT = """
import sys
import pandas as pd
from mf_sm_async import AsyncEndpoint

name, source, out, run_id, resume = sys.argv[1:6]
ep = AsyncEndpoint.attach(name)
try:
    # the longest TTL SageMaker takes (36 s at this time scale): requests queued at the stop outlive the restart
    result = ep.predict(pd.read_parquet(source), rows_per_payload=25, max_in_flight=8, run_id=run_id,
                        resume=resume == "resume", request_ttl_seconds=21600, progress=False)
finally:
    ep.teardown()
result.predictions.to_parquet(out)
result.failures.to_csv(out.replace(".parquet", ".failures.csv"))
"""


def script_client(ep, source, out, run_id: str, resume: bool = False):
    """A user's script scoring through the endpoint; an error ends it the way Python ends any script."""
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    return subprocess.Popen([sys.executable, "-c", CLIENT, ep.name, str(source), str(out), run_id,
                             "resume" if resume else "new"], cwd=ROOT, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_emulator_daemon_stopped_mid_run(suite, record, tmp_path):
    df = frame(1_000, slow_every=25, seed=9)
    df.to_parquet(tmp_path / "in.parquet")
    with deploy() as ep:
        run = RunCheck.of(ep, "daemon-stopped", df, 25)
        client = script_client(ep, tmp_path / "in.parquet", tmp_path / "out.parquet", run.paths.run_id)
        wait_for(lambda: sent(ep, run) >= 6, 120, "some payloads sent")
        # Freeze the client for a moment so the counts taken are all it sent to this daemon; then stop it.
        kill(client, signal.SIGSTOP)
        time.sleep(0.5)
        run.take_counts(ep.name)
        before = len(run.received)
        daemon.stop(suite.state_dir)                   # what `mf-sm-async local stop` does
        restored = {json.loads(p.read_text())["inference_id"] for p in (suite.state_dir / "requests").rglob("*.json")}
        kill(client, signal.SIGCONT)
        started = time.monotonic()
        _, err = client.communicate(timeout=120)
        noticed = time.monotonic() - started
        # our error, whose text says what happened and what to do; no botocore error in the chain
        assert client.returncode == 1 and "botocore" not in err, err
        last = err.strip().splitlines()
        error = next(line for line in last if line.startswith("mf_sm_async.errors."))
        assert error.startswith("mf_sm_async.errors.TargetError: run daemon-stopped stopped: the local emulator at"), err
        assert "not running any more" in error and "resume=True" in last[-1] and "run_id='daemon-stopped'" in last[-1]

        restart = time.monotonic()
        suite.restart()                                # on the same state directory
        restarted = time.monotonic() - restart
        resumed = script_client(ep, tmp_path / "in.parquet", tmp_path / "out.parquet", run.paths.run_id, resume=True)
        _, resume_err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, resume_err[-3000:]
        run.take_counts(ep.name, minus=restored)
    predictions, failures = read_output(tmp_path / "out.parquet")
    figures = record(measure("emulator daemon stopped mid-run, restarted, resume=True", [run], [ep.name],
                             [(predictions, failures)],
                             notes=f"the client stopped {noticed:.1f}s after the daemon with a TargetError naming the "
                                   f"run and how to resume; {before} payloads sent before the stop, "
                                   f"{len(restored)} of them still queued and run by the restarted daemon "
                                   f"(restart {restarted:.1f}s)",
                             numbers={"seconds_to_error": round(noticed, 1), "restored": len(restored),
                                      "restart_seconds": round(restarted, 1)}))
    assert failures.empty, failures["error"].value_counts().to_dict()
    figures.check()


def test_two_runs_on_one_endpoint_one_killed(suite, record, tmp_path):
    a, b = frame(1_000, slow_every=25, seed=10), frame(1_000, slow_every=25, seed=11) * 3
    a.to_parquet(tmp_path / "a.parquet")
    b.to_parquet(tmp_path / "b.parquet")
    with deploy() as ep:
        run_a, run_b = RunCheck.of(ep, "shared-killed", a, 25), RunCheck.of(ep, "shared-survivor", b, 25)
        client_a = predict_cli(ep, tmp_path / "a.parquet", tmp_path / "a.out.parquet", run_a.paths.run_id, 25,
                               "--max-in-flight", "6")
        client_b = predict_cli(ep, tmp_path / "b.parquet", tmp_path / "b.out.parquet", run_b.paths.run_id, 25,
                               "--max-in-flight", "6")
        wait_for(lambda: sent(ep, run_a) >= 6 and sent(ep, run_b) >= 1, 120, "both runs sending")
        kill(client_a)
        client_a.communicate(timeout=60)
        # cleanup while the survivor runs: it must leave the survivor's queue (its run is alive) alone
        from .conftest import cli

        during = cli("cleanup", "--older-than", "1d")
        during_out, during_err = during.communicate(timeout=120)
        assert during.returncode == 0, during_err
        assert run_b.paths.queue_name not in during_out
        _, err_b = client_b.communicate(timeout=300)
        assert client_b.returncode == 0, err_b[-3000:]
        # once the killed run's lease has expired, cleanup removes its queue and subscriptions
        time.sleep(8)
        after = cli("cleanup", "--older-than", "1d")
        after_out, after_err = after.communicate(timeout=120)
        assert after.returncode == 0, after_err
        swept = run_a.paths.queue_name in after_out
        resumed = predict_cli(ep, tmp_path / "a.parquet", tmp_path / "a.out.parquet", run_a.paths.run_id, 25,
                              "--max-in-flight", "6", "--resume")
        _, err_a = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err_a[-3000:]
        for run in (run_a, run_b):
            run.take_counts(ep.name)
    figures = record(measure("two runs on one endpoint, one SIGKILLed", [run_a, run_b], [ep.name],
                             [read_output(tmp_path / "a.out.parquet"), read_output(tmp_path / "b.out.parquet")],
                             notes="the survivor finished with only its own rows; `cleanup` left its queue alone "
                                   f"while it ran{' and removed the dead run' + chr(39) + 's queue after' if swept else ''}; "
                                   "the killed run resumed afterwards"))
    assert swept, after_out
    figures.check()
