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
    result = endpoint.predict(df, rows_per_payload=50, progress=False)
    assert list(result.failures.index) == ["row137"]
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
