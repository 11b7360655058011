"""The sagemaker Python SDK (v3), unmodified, deploying to and invoking asynchronous endpoints on the emulator.

- ``ModelBuilder`` deploys the built-in XGBoost image (a ``model.tar.gz`` holding only ``xgboost-model``) with
  an ``AsyncInferenceConfig``, ``Endpoint.invoke_async`` scores CSV rows, and the scores equal the local model's.
- Against an endpoint deployed in plain boto3 (the ``deploy`` fixture), ``Endpoint.invoke_async``
  (InvokeEndpointAsync; the payload goes by S3 InputLocation, the v3 method has no inline Body) and
  ``sagemaker.core.s3.S3Uploader`` / ``S3Downloader`` for the payload and the result.

v3 has no waiter for an asynchronous result (v2's ``AsyncPredictor`` / ``AsyncInferenceResponse`` wrap a v2
``Predictor``, which v3 removed; tests/sdk_v2 covers v2), so the tests wait for the SNS -> SQS notification as
any consumer does, then read the S3 object through the SDK.

The SDK is pointed at the emulator only by what ``mf-sm-async local env`` exports (run as a user runs it,
the ``sdk`` fixture): AWS_ENDPOINT_URL, dummy credentials, the region, and the SDK's own config file
(``SAGEMAKER_USER_CONFIG_OVERRIDE``: default bucket, telemetry off) plus ``SAGEMAKER_VALIDATE_ROLE=false`` (see
mf_sm_async/local/sdk_config.py for why each is needed). The tests also point ``AWS_CONFIG_FILE`` /
``AWS_SHARED_CREDENTIALS_FILE`` at files that do not exist and unset ``AWS_PROFILE``, so a developer's own
profiles cannot redirect or re-credential the clients.

Nothing here may reach a host other than the emulator: resolving any name but loopback fails and is
recorded, and every test asserts the record is empty. (The SDK goes to STS on a fixed host,
``sts.<region>.amazonaws.com``, ignoring AWS_ENDPOINT_URL, whenever it derives the default bucket's name from
the account id; the config file names the bucket, so it never does.)
"""

from __future__ import annotations

import json
import socket
import sys
import tarfile
import uuid

import boto3
import numpy as np
import pytest
import xgboost as xgb

from botocore.exceptions import ClientError
from sagemaker.core import image_uris
from sagemaker.core.helper.session_helper import Session  # the test extra installs sagemaker>=3
from sagemaker.core.inference_config import AsyncInferenceConfig
from sagemaker.core.resources import Endpoint
from sagemaker.core.s3 import S3Downloader, S3Uploader

from mf_sm_async.local.sdk_config import DEFAULT_BUCKET
from tests.sdk_v2.user_env import USER_AWS_VARIABLES, Offline, exported_env, isolate

from .conftest import ROLE, Deployment

CLI = [sys.executable, "-m", "mf_sm_async.cli"]


@pytest.fixture
def offline(monkeypatch):
    """In this process, resolving any name but loopback fails at once, and is recorded."""
    guard = Offline()
    monkeypatch.setattr(socket, "getaddrinfo", guard.getaddrinfo)
    return guard.attempts


@pytest.fixture
def sdk(emulator, monkeypatch, tmp_path, offline):
    """The environment a user has after `eval "$(mf-sm-async local env)"` (the real command's output).

    Yields a boto3 session and the SDK's Session over it, both made after the environment is set. The SDK's
    resource classes cache their clients per boto3 session object, so a fresh one per test keeps clients
    made under another environment (an earlier test, another daemon) out of this one.
    """
    env = isolate(exported_env(emulator["state_dir"], cli=CLI), str(tmp_path))
    assert env["AWS_ENDPOINT_URL"] == emulator["url"]
    for name in USER_AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    boto_session = boto3.Session()
    yield boto_session, Session(boto_session=boto_session)
    assert offline == [], f"the SDK tried to reach the network: {offline}"


def xgboost_model(tmp_path):
    """A tiny trained Booster, some rows to score, and its model.tar.gz as the XGBoost image reads it."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 4))
    labels = (features[:, 0] - features[:, 2] > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(features, label=labels), 8)
    (tmp_path / "xgboost-model").write_bytes(bytes(booster.save_raw(raw_format="json")))
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "xgboost-model", arcname="xgboost-model")
    return booster, rng.normal(size=(7, 4)), tmp_path / "model.tar.gz"


def test_model_builder_deploys_the_xgboost_image_async_and_invoke_async_scores_like_the_local_model(
        sdk, clients, tmp_path):
    # Imported once the environment is set, as in a user's script: importing sagemaker.serve makes a boto3
    # client at import time (sagemaker.ai_registry's AIRHub), which needs the region.
    from sagemaker.serve.model_builder import ModelBuilder

    boto_session, session = sdk
    booster, rows, tarball = xgboost_model(tmp_path)
    bucket = session.default_bucket()  # named by the SDK config `local env` exports: no STS lookup
    assert bucket == DEFAULT_BUCKET

    # Topics and a queue for the notifications, made with plain boto3 as the async inference guide does.
    sns, sqs, name = boto_session.client("sns"), boto_session.client("sqs"), f"sdk-v3-{uuid.uuid4().hex[:8]}"
    success = sns.create_topic(Name=f"{name}-ok")["TopicArn"]
    error = sns.create_topic(Name=f"{name}-err")["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for topic in (success, error):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    model_data = S3Uploader.upload(str(tarball), f"s3://{bucket}/sdk-v3/model", sagemaker_session=session)
    image_uri = image_uris.retrieve(framework="xgboost", region=session.boto_region_name, version="1.7-1")
    builder = ModelBuilder(image_uri=image_uri, s3_model_data_url=model_data, role_arn=ROLE,
                           sagemaker_session=session, instance_type="ml.m5.xlarge")
    builder.build()
    endpoint = builder.deploy(initial_instance_count=1, async_inference_config=AsyncInferenceConfig(
        output_path=f"s3://{bucket}/sdk-v3/output",
        notification_config={"SuccessTopic": success, "ErrorTopic": error}))
    try:
        assert isinstance(endpoint, Endpoint) and endpoint.endpoint_status == "InService"
        csv = "\n".join(",".join(repr(float(v)) for v in row) for row in rows) + "\n"
        payload = S3Uploader.upload_string_as_file_body(csv, f"s3://{bucket}/sdk-v3/input/rows.csv",
                                                        sagemaker_session=session)
        answer = endpoint.invoke_async(input_location=payload, content_type="text/csv", accept="text/csv",
                                       session=boto_session)
        assert answer.output_location.startswith(f"s3://{bucket}/sdk-v3/output/")
        # No failure_path given: ModelBuilder chose one under the default bucket.
        assert answer.failure_location.startswith(f"s3://{bucket}/async-endpoint-failures/")

        waiter = Deployment(endpoint.endpoint_name, bucket, queue, success, error, clients)
        [note] = waiter.notifications(1, timeout=60)
        assert note["invocationStatus"] == "Completed", note
        assert note["responseParameters"]["outputLocation"] == answer.output_location
        text = S3Downloader.read_file(answer.output_location, sagemaker_session=session)
        scores = [float(v) for v in text.replace(",", "\n").split()]
        np.testing.assert_allclose(scores, booster.predict(xgb.DMatrix(rows)), rtol=1e-5)
    finally:
        endpoint.delete()
    with pytest.raises(ClientError):
        boto_session.client("sagemaker").describe_endpoint(EndpointName=endpoint.endpoint_name)


def test_without_the_sdk_config_from_local_env_the_sdk_would_ask_sts_on_its_fixed_host(sdk, monkeypatch, offline):
    """Why `local env` exports SAGEMAKER_USER_CONFIG_OVERRIDE: AWS_ENDPOINT_URL alone does not keep the SDK local."""
    monkeypatch.delenv("SAGEMAKER_USER_CONFIG_OVERRIDE")
    session = Session(boto_session=boto3.Session())
    with pytest.raises(Exception, match="sts.us-east-1.amazonaws.com"):
        session.default_bucket()
    assert set(offline) == {"sts.us-east-1.amazonaws.com"}
    offline.clear()  # seen and asserted here; the fixture's own check covers the rest of the test


def test_model_builder_role_check_runs_against_the_emulators_iam_when_switched_back_on(sdk, monkeypatch, tmp_path):
    """`local env` turns the SDK's role check off (a user's role is not in the emulator's IAM); switched back on,
    it checks a role made in the emulator: permissions by SimulatePrincipalPolicy, then the trust policy."""
    from sagemaker.core.helper.iam_role_resolver import RoleValidationError
    from sagemaker.serve.model_builder import ModelBuilder

    boto_session, session = sdk
    monkeypatch.delenv("SAGEMAKER_VALIDATE_ROLE")
    iam, name = boto_session.client("iam"), f"sdk-v3-{uuid.uuid4().hex[:8]}"
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
    roles = {}
    for kind, statement in (("full", {"Effect": "Allow", "Action": "*", "Resource": "*"}),
                            ("narrow", {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})):
        roles[kind] = iam.create_role(RoleName=f"{name}-{kind}", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        iam.put_role_policy(RoleName=f"{name}-{kind}", PolicyName="inline",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    _, _, tarball = xgboost_model(tmp_path)
    model_data = S3Uploader.upload(str(tarball), f"s3://{session.default_bucket()}/sdk-v3-role", sagemaker_session=session)
    image_uri = image_uris.retrieve(framework="xgboost", region=session.boto_region_name, version="1.7-1")

    def build(role_arn: str):
        return ModelBuilder(image_uri=image_uri, s3_model_data_url=model_data, role_arn=role_arn,
                            sagemaker_session=session, instance_type="ml.m5.xlarge").build()

    assert build(roles["full"]).execution_role_arn == roles["full"]
    with pytest.raises(RoleValidationError, match="Missing permissions: ecr:GetAuthorizationToken"):
        build(roles["narrow"])
    with pytest.raises(RoleValidationError):  # not in the emulator's IAM, as a user's own role is not
        build(ROLE)


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
