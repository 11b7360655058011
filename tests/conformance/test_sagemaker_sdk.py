"""The sagemaker Python SDK (v3), unmodified, invoking an asynchronous endpoint on the emulator.

The endpoint is deployed in plain boto3 (the ``deploy`` fixture); the SDK does the rest with its v3 API:
``sagemaker.core.resources.Endpoint.invoke_async`` (InvokeEndpointAsync; the payload goes by S3
InputLocation, the v3 method has no inline Body) and ``sagemaker.core.s3.S3Uploader`` / ``S3Downloader``
for the payload and the result. v3 has no waiter for an asynchronous result (v2's ``AsyncPredictor`` /
``AsyncInferenceResponse`` wrap a v2 ``Predictor``, which v3 removed), so the tests wait for the
SNS -> SQS notification as any consumer does, then read the S3 object through the SDK.

The SDK is pointed at the emulator only by the environment ``mf-sm-async local env`` prints (the
``aws_env`` fixture), plus what keeps it off the network:

- ``SAGEMAKER_ADMIN_CONFIG_OVERRIDE`` / ``SAGEMAKER_USER_CONFIG_OVERRIDE`` name a config file written here, so
  no SDK defaults from the machine (or from S3) are read; it sets ``TelemetryOptOut``;
- ``AWS_CONFIG_FILE`` / ``AWS_SHARED_CREDENTIALS_FILE`` name files that do not exist and ``AWS_PROFILE`` is
  unset, so a user's profiles cannot redirect or re-credential the clients.

Nothing here may reach a host other than the emulator: resolving any name but loopback fails and is
recorded, and every test asserts the record is empty. (The SDK goes to STS on a fixed host,
``sts.<region>.amazonaws.com``, ignoring AWS_ENDPOINT_URL, whenever it needs the account id, e.g. for
``Session.default_bucket()``; these tests give it explicit S3 URIs, so it never does.)
"""

from __future__ import annotations

import json
import socket

import boto3
import pytest

from botocore.exceptions import ClientError
from sagemaker.core.helper.session_helper import Session  # the test extra installs sagemaker>=3
from sagemaker.core.resources import Endpoint
from sagemaker.core.s3 import S3Downloader, S3Uploader

SDK_CONFIG = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture
def offline(monkeypatch):
    """In this process, resolving any name but loopback fails at once, and is recorded."""
    attempts: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOOPBACK:
            attempts.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"offline test: no network for {name}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


@pytest.fixture
def sdk(aws_env, monkeypatch, tmp_path, offline):
    """The environment a user has after `eval "$(mf-sm-async local env)"`, plus the SDK's offline config.

    Yields a boto3 session and the SDK's Session over it, both made after the environment is set. The SDK's
    resource classes cache their clients per boto3 session object, so a fresh one per test keeps clients
    made under another environment (an earlier test, another daemon) out of this one.
    """
    config = tmp_path / "sagemaker-config.yaml"
    config.write_text(SDK_CONFIG)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.setenv(name, aws_env[name])
    monkeypatch.setenv("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", str(config))
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    boto_session = boto3.Session()
    yield boto_session, Session(boto_session=boto_session)
    assert offline == [], f"the SDK tried to reach the network: {offline}"


def upload(session, uri: str, payload: dict) -> str:
    return S3Uploader.upload_string_as_file_body(json.dumps(payload), uri, sagemaker_session=session)


def test_sdk_invokes_async_and_reads_the_result(deploy, sdk):
    boto_session, session = sdk
    dep = deploy()
    payload = upload(session, f"s3://{dep.bucket}/sdk/payload.json", {"op": "echo", "value": "from the sagemaker sdk"})

    endpoint = Endpoint.get(endpoint_name=dep.name, session=boto_session)
    answer = endpoint.invoke_async(input_location=payload, content_type="application/json",
                                   accept="application/json", inference_id="sdk-1", session=boto_session)
    assert answer.inference_id == "sdk-1"
    assert answer.output_location == f"s3://{dep.bucket}/out/sdk-1.out"
    assert answer.failure_location == f"s3://{dep.bucket}/failures/sdk-1-error.out"

    [note] = dep.notifications(1, timeout=20)
    assert note["invocationStatus"] == "Completed"
    assert note["responseParameters"]["outputLocation"] == answer.output_location
    result = json.loads(S3Downloader.read_file(answer.output_location, sagemaker_session=session))
    assert result["echo"] == "from the sagemaker sdk"
    assert result["greeting"] == "hello from the model tarball"


def test_sdk_sees_model_errors_at_the_failure_location_and_validation_errors(deploy, sdk):
    boto_session, session = sdk
    dep = deploy()
    endpoint = Endpoint(endpoint_name=dep.name)
    payload = upload(session, f"s3://{dep.bucket}/sdk/bad.json", {"op": "raise", "value": "sdk-row"})

    answer = endpoint.invoke_async(input_location=payload, content_type="application/json", inference_id="sdk-bad",
                                   invocation_timeout_seconds=60, session=boto_session)
    [note] = dep.notifications(1, timeout=20)
    assert note["invocationStatus"] == "Failed"
    assert note["responseParameters"]["failureLocation"] == answer.failure_location
    assert "poison payload 'sdk-row'" in S3Downloader.read_file(answer.failure_location, sagemaker_session=session)

    # A server-side refusal comes back through the SDK as the ClientError boto3 raises. (Out-of-range headers
    # such as RequestTTLSeconds=30 never leave the process: botocore's ParamValidationError stops them first.)
    with pytest.raises(ClientError) as error:
        Endpoint(endpoint_name=f"{dep.name}-missing").invoke_async(input_location=payload, session=boto_session)
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert f"{dep.name}-missing" in error.value.response["Error"]["Message"]


def test_sdk_endpoint_get_describes_the_async_endpoint(deploy, sdk):
    boto_session, _ = sdk
    dep = deploy()
    endpoint = Endpoint.get(endpoint_name=dep.name, session=boto_session)
    assert endpoint.endpoint_status == "InService"
    assert endpoint.async_inference_config.output_config.s3_output_path == f"s3://{dep.bucket}/out"
    assert endpoint.async_inference_config.client_config.max_concurrent_invocations_per_instance == 4
    assert endpoint.production_variants[0].current_instance_count == 1
