"""A real scikit-learn estimator, packaged by `package_estimator`, served by the emulator exactly as a
user's handler is: the predictions that come back through S3 equal the estimator's own."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pytest

from mf_sm_async.model import package_estimator

from .conftest import IMAGE, ROLE, Deployment, make_bucket


@pytest.fixture(scope="module")
def digits_model():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    features, labels = load_digits(return_X_y=True)
    return LogisticRegression(max_iter=2000).fit(features[:1200], labels[:1200]), features[1200:1300]


@pytest.fixture(scope="module")
def sklearn_endpoint(clients, digits_model, tmp_path_factory):
    model, _ = digits_model
    bucket = make_bucket(clients)
    tarball = package_estimator(model, tmp_path_factory.mktemp("sk"))
    clients.s3.upload_file(str(tarball), bucket, "sk/model.tar.gz")
    name = f"sk-{uuid.uuid4().hex[:8]}"
    topic = clients.sns.create_topic(Name=name)["TopicArn"]
    queue = clients.sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    clients.sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/sk/model.tar.gz"})
    clients.sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": f"s3://{bucket}/out", "NotificationConfig": {
            "SuccessTopic": topic, "ErrorTopic": topic}}})
    clients.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    clients.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1})
    yield Deployment(name, bucket, queue, topic, topic, clients)
    clients.sagemaker.delete_endpoint(EndpointName=name)


def score(dep: Deployment, body: bytes, content_type: str, accept: str, **extra) -> bytes:
    answer = dep.clients.sagemaker_runtime.invoke_endpoint_async(
        EndpointName=dep.name, Body=body, ContentType=content_type, Accept=accept, **extra)
    [note] = dep.notifications(1)
    assert note["invocationStatus"] == "Completed", note.get("failureReason")
    assert note["responseParameters"]["contentType"].startswith(accept)
    return dep.read(answer["OutputLocation"])


def test_json_lines_in_and_out(sklearn_endpoint, digits_model):
    model, rows = digits_model
    body = "".join(json.dumps(r.tolist()) + "\n" for r in rows).encode()
    out = score(sklearn_endpoint, body, "application/jsonlines", "application/jsonlines")
    assert [json.loads(line) for line in out.decode().splitlines()] == model.predict(rows).tolist()


def test_csv_in_and_out(sklearn_endpoint, digits_model):
    model, rows = digits_model
    body = "\n".join(",".join(str(v) for v in r) for r in rows).encode()
    out = score(sklearn_endpoint, body, "text/csv", "text/csv")
    assert [int(float(v)) for v in out.decode().split()] == model.predict(rows).tolist()


def test_npy_in_json_out_with_predict_proba(sklearn_endpoint, digits_model):
    model, rows = digits_model
    buffer = io.BytesIO()
    np.save(buffer, rows)
    out = score(sklearn_endpoint, buffer.getvalue(), "application/x-npy", "application/json",
                CustomAttributes="method=predict_proba")
    np.testing.assert_allclose(np.array(json.loads(out)), model.predict_proba(rows), rtol=1e-9)
