"""A run's identity, journal and notifications, without an endpoint: what makes resume and parallel
runs safe."""

from __future__ import annotations

import base64

import boto3
import pytest
from moto import mock_aws

from mf_sm_async import ConfigError
from mf_sm_async.batch.completion import outcome_of
from mf_sm_async.progress import Progress
from mf_sm_async.batch.run import Journal, RunPaths, Sent, check_run_id
from mf_sm_async.config import BatchSpec


def paths(run_id="run-1") -> RunPaths:
    return RunPaths(run_id, "bucket", "mf-sm-async/ep", "s3://bucket/mf-sm-async/ep/outputs",
                    "s3://bucket/mf-sm-async/ep/failures")


def test_keys_and_inference_ids_are_deterministic_and_separate_runs():
    a, b = paths("run-1"), paths("run-2")
    assert a.inference_id("00003.1") == paths("run-1").inference_id("00003.1")
    assert a.inference_id("00003.1") != b.inference_id("00003.1") and len(a.inference_id("0" * 45)) <= 64
    assert a.part_key(a.inference_id("00003.1")) == "00003.1"
    assert a.part_key(b.inference_id("00003.1")) is None  # another run's notification is not ours
    assert a.output_uri("00007") == f"s3://bucket/mf-sm-async/ep/outputs/runs/run-1/{a.inference_id('00007')}.out"
    assert a.failure_uri("00007").endswith(f"/failures/runs/run-1/{a.inference_id('00007')}-error.out")


@pytest.mark.parametrize("bad", ["", "../up", "a/b", "x" * 129, "-lead", "sp ace"])
def test_bad_run_ids_are_refused_naming_the_field(bad):
    with pytest.raises(ConfigError) as error:
        check_run_id(bad)
    assert error.value.field == "run_id"


def test_the_journal_remembers_every_part_sent_across_attempts_and_what_the_endpoint_answered():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bucket")
        first = Journal(s3, paths()).record(["00000", "00001", "00003"], deadline=100.0)
        Journal(s3, paths()).answered(first, accepted=["00000"], refused=["00001"])  # 00003: the crash came first
        Journal(s3, paths()).record(["00001", "00002.0"], deadline=200.0)   # a later attempt, no answers yet
        Journal(s3, paths("other")).record(["00009"], deadline=300.0)
        assert Journal(s3, paths()).invoked() == {"00000": Sent(100.0, "accepted"), "00001": Sent(200.0, "unknown"),
                                                  "00003": Sent(100.0, "unknown"), "00002.0": Sent(200.0, "unknown")}


def notification(inference_id: str, ok: bool = True, body: bytes | None = None) -> dict:
    message = {"eventName": "InferenceResult", "inferenceId": inference_id,
               "invocationStatus": "Completed" if ok else "Failed",
               "responseParameters": {"contentType": "application/jsonlines",
                                      ("outputLocation" if ok else "failureLocation"): "s3://bucket/x"}}
    if not ok:
        message["failureReason"] = "ClientError: boom"
    if body is not None:
        message["responseBody"] = {"content": base64.b64encode(body).decode(), "encoding": "BASE64"}
    return message


def test_notifications_become_outcomes_of_this_run_only():
    p = paths()
    done = outcome_of(notification(p.inference_id("00001"), body=b"1\n"), p)
    assert (done.part_key, done.ok, done.body) == ("00001", True, b"1\n")
    failed = outcome_of(notification(p.inference_id("00002"), ok=False), p)
    assert (failed.ok, failed.reason) == (False, "ClientError: boom")
    assert outcome_of(notification(paths("other").inference_id("00001")), p) is None
    assert outcome_of({"eventName": "TestNotification"}, p) is None


def test_progress_events_are_throttled_but_the_first_and_last_always_come():
    events, now = [], [0.0]
    progress = Progress(events.append, rows=80, payloads=8, interval=1.0, clock=lambda: now[0])
    for n in range(8):
        now[0] += 0.25
        progress.add(done=1, rows_done=10)
    progress.finish()
    assert [e.kind for e in events] == ["planned", "progress", "progress", "finished"]
    assert [e.rows_done for e in events] == [0, 40, 80, 80] and events[-1].fraction == 1.0


@pytest.mark.parametrize("options, field", [({"max_in_flight": 0}, "max_in_flight"),
                                            ({"on_error": "ignore"}, "on_error"),
                                            ({"request_ttl_seconds": 30}, "request_ttl_seconds"),
                                            ({"method": "predict proba"}, "method"),
                                            ({"progress": "yes"}, "progress"),
                                            ({"max_inflight": 3}, "max_inflight")])
def test_predict_options_are_checked_naming_the_field(options, field):
    with pytest.raises(ConfigError) as error:
        BatchSpec.from_kwargs(**options)
    assert error.value.field == field
