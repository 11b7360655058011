"""``ep.predict(df)`` end to end on the emulator, with real model-server processes: alignment to any
index, failures isolated to their rows, injected throttling and slow-downs survived, a crashed client
resumed without sending any part twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request

import numpy as np
import pandas as pd
import pytest

from mf_sm_async import AsyncEndpoint, aws

from .conftest import MODELS, counts


@pytest.fixture(scope="module")
def endpoint(local_target):
    ep = AsyncEndpoint.deploy(model=str(MODELS / "rowsum"), max_instances=2, initial_instances=1,
                              max_concurrent_invocations_per_instance=4, teardown="delete")
    yield ep
    ep.teardown()


def fault(kind: str, count: int, **match) -> None:
    request = urllib.request.Request(f"{aws.local_endpoint_url()}/_mf_sm_async/faults", method="POST",
                                     data=json.dumps({"kind": kind, "count": count, **match}).encode())
    urllib.request.urlopen(request).close()


def frame(rows: int, columns: int = 3, seed: int = 0) -> pd.DataFrame:
    values = np.random.default_rng(seed).normal(size=(rows, columns))
    return pd.DataFrame(values, columns=[f"f{n}" for n in range(columns)])


def row_sums(df: pd.DataFrame) -> np.ndarray:
    """What the model computes, in its memory order (summation order changes the last bits)."""
    return np.ascontiguousarray(df.to_numpy()).sum(axis=1)


def test_predictions_are_the_row_sums_aligned_to_a_string_index_with_duplicates(endpoint):
    df = frame(1_000)
    df.index = [f"id-{n % 300}" for n in range(1_000)]  # duplicates on purpose
    result = endpoint.predict(df, rows_per_payload=64, progress=False)
    assert list(result.predictions.index) == list(df.index)
    np.testing.assert_array_equal(result.predictions["prediction"].to_numpy(), row_sums(df))
    assert result.failures.empty
    m = result.metrics
    assert (m.rows, m.rows_failed, m.payloads) == (1_000, 0, 16)
    assert m.bytes_sent > 0 and m.max_instances_seen >= 1 and m.instance_seconds > 0 and m.rows_per_second > 0


def test_a_multiindex_and_payloads_big_enough_to_go_through_s3(endpoint):
    df = frame(3_000, columns=20, seed=1)
    df.index = pd.MultiIndex.from_arrays([np.arange(3_000) % 7, np.arange(3_000)[::-1]], names=["shop", "n"])
    result = endpoint.predict(df, rows_per_payload=1_500, progress=False)  # ~600 KB each: > 128,000 bytes
    assert result.predictions.index.equals(df.index)
    np.testing.assert_array_equal(result.predictions["prediction"].to_numpy(), row_sums(df))
    assert result.metrics.bytes_sent > 2 * 128_000
    run_inputs = f"{endpoint.resources.prefix}/runs/{result.metrics.run_id}/in/"
    assert not aws.client("s3").list_objects_v2(Bucket=endpoint.resources.bucket, Prefix=run_inputs).get("Contents")


def test_wide_rows(endpoint):
    df = frame(60, columns=2_000, seed=9)
    result = endpoint.predict(df, rows_per_payload=20, progress=False)
    np.testing.assert_allclose(result.predictions["prediction"].to_numpy(), row_sums(df), rtol=1e-12)


def test_one_poison_row_costs_one_row(endpoint):
    df = frame(200, seed=2)
    df.index = [f"row{n}" for n in range(200)]
    df.iloc[137, 1] = -999
    events = []
    result = endpoint.predict(df, rows_per_payload=50, progress=events.append)
    assert list(result.failures.index) == ["row137"]
    # 4 payloads; the poisoned one is split in halves down to its row (50 -> 25 -> 13 -> 6 -> 3 -> 1): each split
    # adds one payload to the count, which ends with every payload it counts done or failed
    last = events[-1]
    assert last.kind == "finished" and last.done + last.failed == last.payloads == 4 + 5, last
    failure = result.failures.loc["row137"]
    assert "poison row" in failure["error"] and failure["failure_location"].startswith("s3://")
    assert np.isnan(result.predictions.loc["row137", "prediction"])
    good = df.drop(index="row137")
    np.testing.assert_array_equal(result.predictions.drop(index="row137")["prediction"].to_numpy(),
                                  row_sums(good))


def test_a_model_answering_the_wrong_number_of_rows_is_a_failure_not_a_misalignment(endpoint):
    df = frame(40, seed=3)
    df.iloc[5, 0] = -777
    result = endpoint.predict(df, rows_per_payload=10, progress=False)
    assert list(result.failures.index) == [5]
    assert "rows" in result.failures.loc[5, "error"]
    np.testing.assert_array_equal(result.predictions.drop(index=5)["prediction"].to_numpy(),
                                  row_sums(df.drop(index=5)))


def test_an_empty_frame_gives_empty_results(endpoint):
    result = endpoint.predict(frame(0), progress=False)
    assert len(result.predictions) == 0 and result.failures.empty and result.metrics.payloads == 0


def test_nan_and_infinity_round_trip(endpoint):
    df = pd.DataFrame({"a": [1.0, np.nan, np.inf, -np.inf, 1e308], "b": [2.0, 1.0, 1.0, 1.0, 1e308]})
    result = endpoint.predict(df, rows_per_payload=2, progress=False)
    got = result.predictions["prediction"].to_numpy()
    assert got[0] == 3.0 and np.isnan(got[1]) and got[2] == np.inf and got[3] == -np.inf and got[4] == np.inf


def test_throttling_and_s3_slowdowns_are_retried(endpoint):
    fault("throttle", 3, endpoint=endpoint.name)
    fault("s3_slowdown", 3, method="PUT")
    df = frame(2_000, columns=40, seed=4)
    result = endpoint.predict(df, rows_per_payload=500, progress=False)  # 500 x 40 floats: uploaded to S3
    assert result.failures.empty, result.failures.to_dict("records")
    np.testing.assert_array_equal(result.predictions["prediction"].to_numpy(), row_sums(df))
    assert result.metrics.retries >= 3


def test_progress_events_reach_a_callback(endpoint):
    events = []
    endpoint.predict(frame(300, seed=5), rows_per_payload=30, progress=events.append)
    assert events[0].kind == "planned" and events[-1].kind == "finished"
    assert events[0].payloads == 10 and events[-1].rows_done == 300
    assert [e.rows_done for e in events] == sorted(e.rows_done for e in events)


def test_a_crashed_client_resumes_without_sending_any_part_twice(endpoint, tmp_path):
    df = frame(400, seed=6)
    df.iloc[::40, 0] = -555                         # every part has a 2 s row: parts are in flight at the crash
    df.to_parquet(tmp_path / "df.parquet")
    script = textwrap.dedent(f"""
        import os, pandas as pd
        from mf_sm_async import AsyncEndpoint
        ep = AsyncEndpoint.attach({endpoint.name!r})
        def crash(event):
            if event.done >= 3:
                os._exit(17)                        # as a kill would: no cleanup, nothing flushed
        ep.predict(pd.read_parquet({str(tmp_path / 'df.parquet')!r}), rows_per_payload=10, max_in_flight=8,
                   run_id="crash-test", progress=crash)
    """)
    before = counts(endpoint.name)["received_per_inference_id"]
    crashed = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), timeout=300)
    assert crashed.returncode == 17
    sent_before_crash = {k for k in counts(endpoint.name)["received_per_inference_id"] if k not in before}
    assert 3 <= len(sent_before_crash) < 40        # some sent (and some still in flight), not all

    result = endpoint.predict(df, rows_per_payload=10, max_in_flight=8, run_id="crash-test", resume=True,
                              progress=False)
    assert result.failures.empty, result.failures.to_dict("records")
    np.testing.assert_array_equal(result.predictions["prediction"].to_numpy(), row_sums(df))
    after = counts(endpoint.name)
    sent = {k: v for k, v in after["received_per_inference_id"].items() if k not in before}
    ran = {k: v for k, v in after["per_inference_id"].items() if k in sent}
    assert len(sent) == 40 and set(sent.values()) == {1}, sent   # every part sent exactly once
    assert ran == sent                                           # and run exactly once
    assert result.metrics.payloads_reused == len(sent_before_crash)
    assert result.metrics.payloads == 40 - len(sent_before_crash)


def test_lost_notifications_are_made_up_for_by_listing_the_runs_outputs(endpoint):
    fault("lose_notification", 2, endpoint=endpoint.name)
    df = frame(100, seed=7)
    result = endpoint.predict(df, rows_per_payload=10, progress=False)
    np.testing.assert_array_equal(result.predictions["prediction"].to_numpy(), row_sums(df))


def test_parallel_runs_on_one_endpoint_each_get_their_own_results(endpoint):
    from concurrent.futures import ThreadPoolExecutor

    frames = [frame(500, seed=10 + n) * (n + 1) for n in range(3)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda df: endpoint.predict(df, rows_per_payload=25, progress=False), frames))
    for df, result in zip(frames, results):
        np.testing.assert_array_equal(result.predictions["prediction"].to_numpy(), row_sums(df))


@pytest.fixture(scope="module")
def behaviours(local_target):
    ep = AsyncEndpoint.deploy(model=str(MODELS / "behaviours"), max_instances=1,
                              max_concurrent_invocations_per_instance=4, teardown="delete")
    yield ep
    ep.teardown()


def test_one_row_per_payload_from_bytes_files_and_s3_uris(behaviours, tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"op": "echo", "value": "file", "padding": "x" * 300_000}))  # > 128,000: via S3
    s3 = aws.client("s3")
    s3.put_object(Bucket=behaviours.resources.bucket, Key="test-inputs/one.json",
                  Body=json.dumps({"op": "echo", "value": "in s3"}).encode())
    df = pd.DataFrame({"payload": [json.dumps({"op": "echo", "value": "bytes"}).encode(), str(big),
                                   f"s3://{behaviours.resources.bucket}/test-inputs/one.json",
                                   json.dumps({"op": "raise", "value": 4}).encode(),
                                   json.dumps({"op": "echo", "value": "ünïcødé ✓ 漢字"}, ensure_ascii=False).encode()]},
                      index=["a", "b", "c", "d", "e"])
    result = behaviours.predict(df, payload_column="payload", content_type="application/json", progress=False)
    echoes = result.predictions["prediction"].map(lambda p: p["echo"] if isinstance(p, dict) else None)
    assert echoes.drop(index="d").tolist() == ["bytes", "file", "in s3", "ünïcødé ✓ 漢字"]
    assert pd.isna(result.predictions.loc["d", "prediction"])
    assert list(result.failures.index) == ["d"] and "poison payload 4" in result.failures.loc["d", "error"]
    assert result.metrics.payloads == 5


def test_a_payload_column_holding_something_else_is_refused_naming_the_row(behaviours):
    from mf_sm_async import ConfigError

    with pytest.raises(ConfigError) as error:
        behaviours.predict(pd.DataFrame({"payload": [b"{}", 42]}), payload_column="payload", progress=False)
    assert "payload[1]" in str(error.value) and "s3://" in str(error.value)


def test_invoke_async_results_failures_and_a_timeout_that_does_not_hang(behaviours, tmp_path):
    import time

    from mf_sm_async import ModelError, TimeoutError

    answer = behaviours.invoke_async(json.dumps({"op": "echo", "value": 1}).encode(), content_type="application/json")
    assert json.loads(answer.result(timeout=60))["echo"] == 1
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"op": "echo", "value": 2, "padding": "y" * 200_000}))
    assert json.loads(behaviours.invoke_async(str(path), content_type="application/json").result(60))["echo"] == 2
    with pytest.raises(ModelError) as error:
        behaviours.invoke_async(json.dumps({"op": "raise", "value": 3}).encode()).result(timeout=60)
    assert "poison payload 3" in str(error.value)
    slow = behaviours.invoke_async(json.dumps({"op": "sleep", "seconds": 5}).encode())
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        slow.result(timeout=0.5)
    assert time.monotonic() - started < 2.0


def test_the_predict_command_scores_a_parquet_file(endpoint, tmp_path):
    df = frame(250, seed=8)
    df.index = [f"r{n}" for n in range(250)]
    df.to_parquet(tmp_path / "in.parquet")
    done = subprocess.run([sys.executable, "-m", "mf_sm_async.cli", "predict", "--endpoint", endpoint.name,
                           "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"),
                           "--rows-per-payload", "40"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.index) == list(df.index)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), row_sums(df))
    assert "250 rows, 0 failed" in done.stdout

    bad = subprocess.run([sys.executable, "-m", "mf_sm_async.cli", "predict", "--endpoint", endpoint.name,
                          "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out.parquet"),
                          "--rows-per-payload", "0"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "rows_per_payload=0" in bad.stderr


def test_a_per_row_output_over_16_mib_stays_in_s3_and_the_prediction_is_its_uri(behaviours, tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"op": "echo", "value": "z" * (17 * 2**20)}))
    df = pd.DataFrame({"payload": [str(big), json.dumps({"op": "echo", "value": "small"}).encode()]})
    result = behaviours.predict(df, payload_column="payload", content_type="application/json", progress=False)
    uri, small = result.predictions["prediction"].tolist()
    assert small["echo"] == "small"
    assert isinstance(uri, str) and uri.startswith("s3://")
    bucket, key = uri[5:].split("/", 1)
    assert len(json.loads(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())["echo"]) == 17 * 2**20
