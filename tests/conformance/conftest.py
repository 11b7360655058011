"""The emulator as a user meets it: a real daemon process, reached by unmodified real clients.

One daemon per test session (its own state directory, a time scale of 60 so a 60 s RequestTTLSeconds
passes in one real second); each test makes its own uniquely named bucket, topics and endpoints.
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from mf_sm_async import aws
from mf_sm_async.local import daemon
from mf_sm_async.model import package_directory

MODELS = Path(__file__).parent / "models"
TIME_SCALE = 60.0
ROLE = "arn:aws:iam::123456789012:role/test"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
# The scikit-learn image imports SAGEMAKER_PROGRAM from SAGEMAKER_SUBMIT_DIRECTORY and has no default for
# either: code/inference.py of model.tar.gz is served only with these (on AWS as on the emulator).
SCRIPT_ENV = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("emulator-state")
    state = daemon.start(state_dir, time_scale=TIME_SCALE)
    yield state
    daemon.stop(state_dir)


@pytest.fixture(scope="session")
def aws_env(emulator) -> dict:
    """The environment a user exports (`mf-sm-async local env`) for any AWS client."""
    from mf_sm_async.aws import local_env

    return {**os.environ, **local_env(emulator["url"])}


@dataclass
class Clients:
    url: str
    _cache: dict = field(default_factory=dict)

    def __getattr__(self, service: str):
        name = service.replace("_", "-")
        if name not in self._cache:
            self._cache[name] = boto3.client(
                name, endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
                aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1},
                                                               max_pool_connections=32))
        return self._cache[name]


@pytest.fixture(scope="session")
def clients(emulator) -> Clients:
    return Clients(emulator["url"])


@dataclass
class Deployment:
    name: str
    bucket: str
    queue_url: str
    success_topic: str
    error_topic: str
    clients: Clients

    def notifications(self, count: int, timeout: float = 60.0) -> list[dict]:
        """Wait for ``count`` inference notifications (TestNotifications skipped), as an SQS consumer does."""
        import time

        found, deadline = [], time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            messages = self.clients.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                                        WaitTimeSeconds=1).get("Messages", [])
            for message in messages:
                body = json.loads(json.loads(message["Body"])["Message"])
                self.clients.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                if body.get("eventName") == "InferenceResult":
                    found.append(body)
        assert len(found) >= count, f"only {len(found)} of {count} notifications arrived in {timeout}s"
        return found

    def read(self, s3_uri: str) -> bytes:
        bucket, key = s3_uri[5:].split("/", 1)
        return self.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def make_bucket(clients: Clients) -> str:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    clients.s3.create_bucket(Bucket=bucket)
    return bucket


def upload_model(clients: Clients, bucket: str, model: str | Path, tmp_path: Path) -> str:
    """``model``: a test model's directory name under models/, or a ready model.tar.gz."""
    if isinstance(model, Path):
        tarball, label = model, "packaged"
    else:
        tarball, label = package_directory(MODELS / model, tmp_path / f"pkg-{model}"), model
    clients.s3.upload_file(str(tarball), bucket, f"models/{label}/model.tar.gz")
    return f"s3://{bucket}/models/{label}/model.tar.gz"


def create_deployment(clients: Clients, tmp_path: Path, model: str | Path = "behaviours", *, max_concurrent: int = 4,
                      instances: int = 1, include_response: tuple[str, ...] = (), failure_path: bool = True,
                      wait: bool = True, async_config: bool = True) -> Deployment:
    """Deploy a test model the way AWS's async inference guide does it, in plain boto3."""
    name = f"ep-{uuid.uuid4().hex[:10]}"
    bucket = make_bucket(clients)
    model_url = upload_model(clients, bucket, model, tmp_path)
    success = clients.sns.create_topic(Name=f"{name}-ok")["TopicArn"]
    error = clients.sns.create_topic(Name=f"{name}-err")["TopicArn"]
    queue = clients.sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for topic in (success, error):
        clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    clients.sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                                   PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_url,
                                                     "Environment": SCRIPT_ENV})
    output = {"S3OutputPath": f"s3://{bucket}/out",
              "NotificationConfig": {"SuccessTopic": success, "ErrorTopic": error,
                                     "IncludeInferenceResponseIn": list(include_response)}}
    if failure_path:
        output["S3FailurePath"] = f"s3://{bucket}/failures"
    extra = {"AsyncInferenceConfig": {"ClientConfig": {"MaxConcurrentInvocationsPerInstance": max_concurrent},
                                      "OutputConfig": output}} if async_config else {}
    clients.sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.g5.xlarge",
        "InitialInstanceCount": instances}], **extra)
    clients.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if wait:
        clients.sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    return Deployment(name, bucket, queue, success, error, clients)


@pytest.fixture
def deploy(clients, tmp_path):
    made = []

    def _deploy(model: str = "behaviours", **options) -> Deployment:
        dep = create_deployment(clients, tmp_path, model, **options)
        made.append(dep.name)
        return dep

    yield _deploy
    for name in made:
        try:
            clients.sagemaker.delete_endpoint(EndpointName=name)
        except clients.sagemaker.exceptions.ClientError:
            pass


@pytest.fixture(scope="module")
def local_target(tmp_path_factory):
    """The package's own local target (auto-started daemon) in a home of its own, time scale 600."""
    home = tmp_path_factory.mktemp("home")
    saved = {k: os.environ.get(k) for k in ("MF_SM_ASYNC_HOME", "MF_SM_ASYNC_TIME_SCALE", "MF_SM_ASYNC_TARGET")}
    os.environ.update(MF_SM_ASYNC_HOME=str(home), MF_SM_ASYNC_TIME_SCALE="600")
    os.environ.pop("MF_SM_ASYNC_TARGET", None)
    yield home
    daemon.stop(home / "local")
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def counts(name: str) -> dict:
    url = aws.local_endpoint_url()
    with urllib.request.urlopen(f"{url}/_mf_sm_async/counts") as response:
        return json.load(response).get(f"us-east-1/{name}", {})
