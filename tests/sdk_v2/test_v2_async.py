"""The sagemaker Python SDK v2's documented asynchronous inference flow, unchanged, on the emulator.

Each test is written as SageMaker's own examples write it (``image_uris.retrieve``, ``Model`` / ``SKLearnModel``,
``deploy(async_inference_config=AsyncInferenceConfig(...))``, ``predict_async``, ``get_result(WaiterConfig(...))``,
``Session().upload_data`` / ``read_s3_file``, ``delete_endpoint``); the only thing pointing them at the emulator
is the environment ``mf-sm-async local env`` exports (the ``user_env`` fixture), and no host name but loopback
may be resolved (the ``offline`` fixture, see conftest.py).

The models follow the real containers' contracts: the built-in XGBoost image gets a ``model.tar.gz`` holding
only ``xgboost-model`` (CSV in, scores out), the scikit-learn framework image an entry point the SDK uploads as
``sourcedir.tar.gz`` (named by SAGEMAKER_PROGRAM / SAGEMAKER_SUBMIT_DIRECTORY) with the container's default
``input_fn`` / ``output_fn``. Every prediction is compared with the same model run locally.
"""

from __future__ import annotations

import json
import tarfile
import time
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest
import xgboost as xgb
from botocore.exceptions import ClientError
from sagemaker import Session, image_uris
from sagemaker.async_inference import AsyncInferenceConfig, WaiterConfig
from sagemaker.deserializers import CSVDeserializer
from sagemaker.exceptions import AsyncInferenceModelError
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.predictor_async import AsyncPredictor
from sagemaker.serializers import CSVSerializer
from sagemaker.sklearn.model import SKLearnModel

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
INSTANCE_TYPE = "ml.m5.xlarge"
WAIT = WaiterConfig(max_attempts=120, delay=1)
SERVING_CODE = '''\
import os

import numpy as np


def model_fn(model_dir):
    return np.load(os.path.join(model_dir, "weights.npy"))


def predict_fn(data, weights):
    return np.asarray(data, dtype="float64") @ weights
'''


def tiny_xgboost(rng) -> tuple[xgb.Booster, np.ndarray]:
    features = rng.normal(size=(200, 4))
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(features, label=labels), 8)
    return booster, rng.normal(size=(12, 4))


def xgboost_tarball(booster: xgb.Booster, folder: Path) -> Path:
    """model.tar.gz as the built-in XGBoost container reads it: one file named ``xgboost-model``."""
    model_file = folder / "xgboost-model"
    model_file.write_bytes(bytes(booster.save_raw(raw_format="json")))
    tarball = folder / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(model_file, arcname="xgboost-model")
    return tarball


def scores(rows) -> np.ndarray:
    """CSVDeserializer's rows of strings -> floats (the container writes one score per line or per cell)."""
    return np.array([float(cell) for row in rows for cell in row if cell.strip()])


def notifications(sqs, queue_url: str, count: int, timeout: float = 60.0) -> list[dict]:
    found, deadline = [], time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1).get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            body = json.loads(json.loads(message["Body"])["Message"])
            if body.get("eventName") == "InferenceResult":
                found.append(body)
    assert len(found) >= count, f"{len(found)} of {count} notifications in {timeout}s"
    return found


@pytest.fixture
def topics():
    """SNS success / error topics delivering to an SQS queue, as the async inference guide sets them up."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    name = f"sdk2-{uuid.uuid4().hex[:8]}"
    success = sns.create_topic(Name=f"{name}-ok")["TopicArn"]
    error = sns.create_topic(Name=f"{name}-err")["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for topic in (success, error):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return {"SuccessTopic": success, "ErrorTopic": error}, sqs, queue


def test_xgboost_image_async_flow_matches_the_local_model(tmp_path, topics):
    notification_config, sqs, queue = topics
    booster, rows = tiny_xgboost(np.random.default_rng(7))
    expected = booster.predict(xgb.DMatrix(rows))

    session = Session()
    bucket = session.default_bucket()  # from the SDK config `local env` names: no STS lookup
    model_data = session.upload_data(str(xgboost_tarball(booster, tmp_path)), key_prefix="sdk-v2/xgboost/model")
    image_uri = image_uris.retrieve(framework="xgboost", region=session.boto_region_name, version="1.7-1")
    model = Model(image_uri=image_uri, model_data=model_data, role=ROLE, sagemaker_session=session,
                  predictor_cls=Predictor)
    predictor = model.deploy(
        initial_instance_count=1, instance_type=INSTANCE_TYPE, serializer=CSVSerializer(),
        deserializer=CSVDeserializer(),
        async_inference_config=AsyncInferenceConfig(output_path=f"s3://{bucket}/sdk-v2/xgboost/output",
                                                     notification_config=notification_config))
    try:
        assert isinstance(predictor, AsyncPredictor)
        described = session.sagemaker_client.describe_endpoint(EndpointName=predictor.endpoint_name)
        assert described["EndpointStatus"] == "InService"

        # data=: the SDK serialises to CSV and uploads it to the default bucket itself.
        response = predictor.predict_async(data=rows[:6])
        assert response.output_path.startswith(f"s3://{bucket}/sdk-v2/xgboost/output/")
        np.testing.assert_allclose(scores(response.get_result(WAIT)), expected[:6], rtol=1e-5)

        # input_path=: a CSV file the user uploaded with Session().upload_data.
        csv_file = tmp_path / "rows.csv"
        csv_file.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in rows[6:]) + "\n")
        input_path = session.upload_data(str(csv_file), key_prefix="sdk-v2/xgboost/input")
        response = predictor.predict_async(input_path=input_path, initial_args={"ContentType": "text/csv"})
        np.testing.assert_allclose(scores(response.get_result(WAIT)), expected[6:], rtol=1e-5)
        output_key = response.output_path.split("/", 3)[3]
        text = session.read_s3_file(bucket, output_key)
        np.testing.assert_allclose([float(v) for v in text.replace(",", "\n").split()], expected[6:], rtol=1e-5)

        done = notifications(sqs, queue, 2)
        assert {n["invocationStatus"] for n in done} == {"Completed"}
        assert response.output_path in {n["responseParameters"]["outputLocation"] for n in done}

        # A payload the container cannot parse comes back from get_result as the model's error.
        bad = predictor.predict_async(data="not,a,number")
        with pytest.raises(AsyncInferenceModelError):
            bad.get_result(WAIT)
        [failed] = notifications(sqs, queue, 1)
        assert failed["invocationStatus"] == "Failed"
    finally:
        predictor.delete_endpoint()
    with pytest.raises(ClientError):
        session.sagemaker_client.describe_endpoint(EndpointName=predictor.endpoint_name)


def test_sklearn_framework_model_with_an_entry_point(tmp_path):
    rng = np.random.default_rng(11)
    weights, rows = rng.normal(size=3), rng.normal(size=(5, 3))
    np.save(tmp_path / "weights.npy", weights)
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "weights.npy", arcname="weights.npy")
    source = tmp_path / "src"
    source.mkdir()
    (source / "serve.py").write_text(SERVING_CODE)

    session = Session()
    model_data = session.upload_data(str(tmp_path / "model.tar.gz"), key_prefix="sdk-v2/sklearn/model")
    model = SKLearnModel(model_data=model_data, role=ROLE, entry_point="serve.py", source_dir=str(source),
                         framework_version="1.2-1", py_version="py3", sagemaker_session=session)
    # The SDK's default predictor for this model (SKLearnPredictor) sends and reads NumPy's .npy format.
    predictor = model.deploy(initial_instance_count=1, instance_type=INSTANCE_TYPE,
                             async_inference_config=AsyncInferenceConfig())
    try:
        assert isinstance(predictor, AsyncPredictor)
        container = session.sagemaker_client.describe_model(ModelName=model.name)["PrimaryContainer"]
        assert container["Environment"]["SAGEMAKER_PROGRAM"] == "serve.py"
        assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"].endswith("/sourcedir.tar.gz")
        response = predictor.predict_async(data=rows)
        # No output_path given: the SDK chose one under the default bucket.
        assert response.output_path.startswith(f"s3://{session.default_bucket()}/")
        np.testing.assert_allclose(response.get_result(WAIT), rows @ weights, rtol=1e-9)
    finally:
        predictor.delete_endpoint()
