"""Bad input, as a user would give it, against a real emulator: each case fails with an
AsyncInferenceError whose headline names the field, the value and what is allowed, and leaves nothing
behind (every endpoint, config, model, topic, subscription, queue, alarm, scalable target, bucket and
object on the emulator is listed before and after).

The field tables are checked against the dataclasses: a new field of EndpointSpec, BatchSpec or
InvokeSpec without a bad-value case here fails ``test_every_field_has_bad_values``.

The 1 GB limit: SageMaker documents "up to 1 GB" for an asynchronous payload; we enforce 1 GiB
(1,073,741,824 bytes, ``mf_sm_async.batch.plan.MAX_PAYLOAD_BYTES``) in the client, before any upload,
and in the emulator, for an InputLocation object. One byte more is refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mf_sm_async import AsyncEndpoint, ConfigError, ModelError
from mf_sm_async.batch.payloads import check_value
from mf_sm_async.batch.plan import MAX_PAYLOAD_BYTES
from mf_sm_async.config import BatchSpec, EndpointSpec, InvokeSpec
from mf_sm_async.errors import AsyncInferenceError

from .security_support import MODELS, ROOT, created, inventory, own_emulator, raw_client


class Thing:
    """An arbitrary Python object: no codec has a form for it."""


# field -> values that must be refused (each with a ConfigError naming the field)
ENDPOINT_BAD = {
    "name": ["", "-ep", "ep-", "my_endpoint", "my.endpoint", "a" * 64, "a" + "-" * 62 + "b", "caf\u00e9", "ep\n", 5],
    "instance_type": ["m5.large", "ml.m5", "ML.M5.LARGE", None],
    "min_instances": [-1, 3, 1.0],
    "max_instances": [0, 1001, 2.0, True],
    "initial_instances": [0, 3],
    "max_concurrent_invocations_per_instance": [0, 1001],
    "notifications": ["yes", 1],
    "s3_prefix": ["my-bucket/runs", "s3://My_Bucket", "s3://192.168.1.1/x"],
    "teardown": ["destroy", None],
    "target": ["azure"],
    "role_arn": ["sagemaker-role", "arn:aws:iam::12345:role/x"],
    "image_uri": ["repo/image :latest", ""],
    "backlog_per_instance_target": [0, -1.0, math.nan, math.inf],
    "scale_in_cooldown_seconds": [-1, 86_401],
    "scale_out_cooldown_seconds": [-1, "60"],
    "tags": [{"aws:owner": "me"}, "team=ml", {"team": "v" * 257}],
    "kms_key_id": ["not a key", "arn:aws:kms:us-east-1:12345:key/abc", "alias/has space", 42],
}
BATCH_BAD = {
    "rows_per_payload": [0, 1_000_001, 2.5, True],
    "max_payload_bytes": [0, MAX_PAYLOAD_BYTES + 1],
    "content_type": ["text/plain", "application/xml", "jsonlines", None],
    "accept": ["image/png", 5],
    "max_in_flight": [0, 10_001],
    "progress": ["sometimes", 3],
    "on_error": ["ignore"],
    "resume": ["yes"],
    "run_id": ["a b", "../up", "-x", "x" * 129],
    "keep_inputs": [1],
    "request_ttl_seconds": [59, 21_601],
    "invocation_timeout_seconds": [0, 3_601],
    "method": ["predict proba", "__import__('os')"],
    "custom_attributes": ["caf\u00e9", "x" * 1025],
    "payload_column": [5],
    "upload_threads": [0, 257],
    "download_threads": [0],
}
INVOKE_BAD = {
    "content_type": ["not a type", "caf\u00e9/x"],
    "accept": ["x"],
    "custom_attributes": ["caf\u00e9"],
    "inference_id": ["", "x" * 65, "tab\there"],
    "request_ttl_seconds": [59, 21_601],
    "invocation_timeout_seconds": [0, 3_601],
}
# option combinations that are each valid alone
BATCH_COMBINATIONS = [
    ({"rows_per_payload": 10, "max_payload_bytes": 1000}, "max_payload_bytes"),
    ({"payload_column": "a", "rows_per_payload": 10}, "rows_per_payload"),
    ({"payload_column": "a", "content_type": "no-slash"}, "content_type"),
    ({"method": "predict_proba", "custom_attributes": "x=1"}, "method"),
    ({"resume": True}, "run_id"),
    ({"payload_column": "no_such_column"}, "payload_column"),
]


def cases(table: dict) -> list:
    return [pytest.param(field, value, id=f"{field}={value!r}"[:50]) for field, values in table.items()
            for value in values]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with own_emulator(tmp_path_factory.mktemp("bad-input")) as state:
        yield state


@pytest.fixture(scope="module")
def endpoint(emulator):
    ep = AsyncEndpoint.deploy(model=str(MODELS / "rowsum"), max_instances=1, teardown="delete")
    yield ep
    ep.teardown()


@pytest.fixture(scope="module")
def garbage(emulator):
    ep = AsyncEndpoint.deploy(model=str(MODELS / "garbage"), max_instances=1, teardown="delete")
    yield ep
    ep.teardown()


@pytest.fixture
def nothing_created(emulator):
    """Fails the test if anything appeared on the emulator while it ran."""
    before = inventory(emulator["url"])
    yield
    assert created(before, inventory(emulator["url"])) == {}


def frame(rows: int = 20, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(rows, 3)), columns=list("abc"))


def assert_names(error: ConfigError, field: str, value) -> None:
    assert isinstance(error, AsyncInferenceError)
    assert error.field == field and error.allowed
    assert error.headline == f"{field}={error.value!r} is invalid: allowed {error.allowed}"
    assert "\n" not in error.headline
    if not isinstance(value, (dict, float)):
        assert error.value == value


def test_every_field_has_bad_values():
    for spec, table in ((EndpointSpec, ENDPOINT_BAD), (BatchSpec, BATCH_BAD), (InvokeSpec, INVOKE_BAD)):
        fields = {f.name for f in dataclasses.fields(spec)}
        assert set(table) == fields, f"{spec.__name__}: no bad-value case for {sorted(fields - set(table))}"


@pytest.mark.parametrize("field, value", cases(ENDPOINT_BAD))
def test_a_bad_deploy_option_names_itself_and_creates_nothing(emulator, nothing_created, field, value):
    with pytest.raises(ConfigError) as error:
        AsyncEndpoint.deploy(model=str(MODELS / "rowsum"), **{field: value})
    assert_names(error.value, field, value)


@pytest.mark.parametrize("field, value", cases(BATCH_BAD))
def test_a_bad_predict_option_names_itself_and_creates_nothing(endpoint, nothing_created, field, value):
    with pytest.raises(ConfigError) as error:
        endpoint.predict(frame(), **{field: value})
    assert_names(error.value, field, value)


@pytest.mark.parametrize("options, field", BATCH_COMBINATIONS, ids=[f for _, f in BATCH_COMBINATIONS])
def test_predict_options_that_do_not_go_together_name_one_and_create_nothing(endpoint, nothing_created, options,
                                                                             field):
    with pytest.raises(ConfigError) as error:
        endpoint.predict(frame(), **options)
    assert error.value.field == field and error.value.allowed


@pytest.mark.parametrize("field, value", cases(INVOKE_BAD))
def test_a_bad_invoke_async_option_is_refused_before_the_payload_is_uploaded(endpoint, nothing_created, field,
                                                                              value):
    payload = b"1.0,2.0,3.0\n" * 20_000  # 240 KB: over the inline limit, so it would be uploaded first
    with pytest.raises(ConfigError) as error:
        endpoint.invoke_async(payload, **{field: value})
    assert_names(error.value, field, value)


@pytest.mark.parametrize("name", ["bad_name", "-starts-with-hyphen", "ends-with-hyphen-", "dots.in.name"])
def test_the_emulator_refuses_a_malformed_endpoint_name_from_any_client(emulator, nothing_created, name):
    sagemaker = raw_client("sagemaker", emulator["url"])
    with pytest.raises(sagemaker.exceptions.ClientError) as error:
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName="whatever")
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$" in error.value.response["Error"]["Message"]


# column -> (values, content type, dtype shown)
DTYPES = {
    "complex": (np.array([1 + 2j] * 20), "application/jsonlines", "complex128"),
    "objects": (pd.Series([Thing()] * 20, dtype=object), "application/jsonlines", "object"),
    "decimal-like": (pd.Series([{1, 2}] * 20, dtype=object), "application/json", "object"),
    "not-utf8-bytes": (pd.Series([b"\xff\xfe caf\xe9"] * 20, dtype=object), "application/jsonlines", "object"),
    "surrogates": (pd.Series(["caf\udce9"] * 20, dtype=object), "application/jsonlines", "object"),
    "period": (pd.Series(pd.period_range("2020-01", periods=20, freq="M")), "application/jsonlines", "period[M]"),
    "timedelta-csv": (pd.to_timedelta(np.arange(20), unit="s"), "text/csv", "timedelta64[ns]"),
    "category-npy": (pd.Categorical(["x", "y"] * 10), "application/x-npy", "category"),
    "text-csv": (pd.Series(["a"] * 20), "text/csv", "str"),
    "objects-parquet": (pd.Series([Thing()] * 20, dtype=object), "application/x-parquet", "object"),
}


@pytest.mark.parametrize("column", list(DTYPES))
def test_a_column_no_payload_can_carry_is_named_with_its_dtype_before_any_upload(endpoint, nothing_created, column):
    values, content_type, dtype = DTYPES[column]
    df = frame()
    df[column] = values
    dtype = str(df[column].dtype)  # the unit pandas picked (ns or us) for timedeltas
    with pytest.raises(ConfigError) as error:
        endpoint.predict(df, content_type=content_type, rows_per_payload=5, progress=False)
    assert error.value.field == f"frame[{column!r}].dtype" and error.value.value == dtype
    assert error.value.headline.startswith(f"frame[{column!r}].dtype={dtype!r} is invalid: allowed ")


def test_timedeltas_and_datetimes_are_supported_as_iso_8601_text():
    from mf_sm_async.batch.codecs import check_frame, encode_rows

    df = pd.DataFrame({"t": pd.to_timedelta([1], unit="s"), "d": pd.to_datetime(["2024-01-02"])})
    check_frame(df)
    assert encode_rows(df) == b'["P0DT0H0M1S","2024-01-02T00:00:00"]\n'


def test_a_file_one_byte_over_1_gib_is_refused_before_upload(endpoint, nothing_created, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as out:  # sparse: no gigabyte is written to disk
        out.truncate(MAX_PAYLOAD_BYTES + 1)
    with pytest.raises(ConfigError) as error:
        endpoint.invoke_async(str(big), content_type="application/octet-stream")
    assert error.value.field == f"payload {big}" and error.value.value == "1,073,741,825 bytes"
    assert "at most 1,073,741,824 bytes (1 GiB)" in error.value.allowed
    with open(big, "r+b") as out:
        out.truncate(MAX_PAYLOAD_BYTES)
    check_value("payload", str(big))  # exactly 1 GiB is allowed


def test_bytes_one_over_1_gib_are_refused_before_upload(endpoint, nothing_created):
    with pytest.raises(ConfigError) as error:
        check_value("payload", memoryview(np.zeros(MAX_PAYLOAD_BYTES + 1, dtype=np.uint8)))
    assert error.value.value == "1,073,741,825 bytes"


@pytest.mark.slow
def test_the_emulator_fails_an_input_location_one_byte_over_1_gib(endpoint, emulator, tmp_path):
    """An s3:// URI is invoked in place, so the client cannot measure it: the emulator does, and fails the
    request with a reason before a byte reaches the model. The object is uploaded by a plain boto3 client
    (ours refuses it) from a sparse file; the emulator's disk does hold the gigabyte for the test's length."""
    from boto3.s3.transfer import TransferConfig

    big = tmp_path / "big.bin"
    with open(big, "wb") as out:
        out.truncate(MAX_PAYLOAD_BYTES + 1)
    bucket, key = endpoint.resources.bucket, f"{endpoint.resources.prefix}/big-{uuid.uuid4().hex[:6]}.bin"
    s3 = raw_client("s3", emulator["url"])
    s3.upload_file(str(big), bucket, key, Config=TransferConfig(multipart_chunksize=64 << 20, max_concurrency=4))
    try:
        handle = endpoint.invoke_async(f"s3://{bucket}/{key}", content_type="text/csv")
        with pytest.raises(ModelError) as error:
            handle.result(timeout=300)
        assert "1,073,741,825 bytes" in str(error.value) and "at most 1,073,741,824 bytes" in str(error.value)
    finally:
        s3.delete_object(Bucket=bucket, Key=key)


def test_a_non_utf8_csv_given_to_the_cli_is_refused_naming_the_file(endpoint, nothing_created, tmp_path):
    source = tmp_path / "latin1.csv"
    source.write_bytes("a,b,c\n1,2,caf\u00e9\n".encode("latin-1"))
    out = tmp_path / "out.csv"
    done = subprocess.run([sys.executable, "-m", "mf_sm_async.cli", "predict", "--endpoint", endpoint.name,
                           "--input", str(source), "--output", str(out)], capture_output=True, text=True,
                          env=os.environ, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    first = done.stderr.splitlines()[0]
    assert first == f"mf-sm-async: --input={str(source)!r} is invalid: allowed a UTF-8 .csv file"
    assert "Traceback" not in done.stderr and not out.exists()


def test_an_output_the_codecs_cannot_decode_fails_only_its_rows(garbage):
    df = frame(30, seed=5).abs()
    df.index = [f"r{n}" for n in range(30)]
    df.iloc[4, 0] = -1    # answered with bytes that are not UTF-8
    df.iloc[17, 2] = -2   # answered with an HTML error page
    result = garbage.predict(df, rows_per_payload=10, progress=False)
    assert sorted(result.failures.index) == ["r17", "r4"]
    assert "not UTF-8 text" in result.failures.loc["r4", "error"]
    assert "not one JSON value" in result.failures.loc["r17", "error"]
    good = df.drop(index=["r4", "r17"])
    np.testing.assert_allclose(result.predictions.loc[good.index, "prediction"], good.sum(axis=1))
    # nothing lost: every row is a prediction or a failure, none both
    assert result.predictions["prediction"].notna().sum() + len(result.failures) == len(df)
    assert result.metrics.rows_failed == 2


def test_garbage_under_the_npy_accept_type_fails_only_its_row(garbage):
    df = frame(12, seed=6).abs()
    df.iloc[9, 1] = -3  # answered with bytes that are not a .npy array
    result = garbage.predict(df, rows_per_payload=4, accept="application/x-npy", progress=False)
    assert list(result.failures.index) == [9]
    assert "not a .npy array" in result.failures.loc[9, "error"]
    np.testing.assert_allclose(result.predictions.drop(index=9)["prediction"], df.drop(index=9).sum(axis=1))

