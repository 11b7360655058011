"""``mf-sm-async demo``: the whole asynchronous inference round trip on the local emulator, in plain boto3.

Trains a scikit-learn classifier on the digits data that ships with scikit-learn, deploys it to an
asynchronous endpoint, sends the test rows as inline JSON Lines payloads, learns completions from
SNS -> SQS notifications, reads the outputs from S3, prints the accuracy, and deletes everything it
made. The flow of the Metaflow issue replaces this as the README's main job.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

from . import aws
from .model import package_estimator

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/mf-sm-async-demo"


def _train():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    features, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(features, labels, test_size=0.25, random_state=0)
    model = LogisticRegression(max_iter=2000).fit(x_train, y_train)
    return model, x_test, y_test


def run_demo(rows_per_payload: int = 50, target: str = "local") -> float:
    """Run the demo and return the accuracy of the predictions that came back."""
    started = time.monotonic()
    model, x_test, y_test = _train()
    print(f"trained LogisticRegression on digits; scoring {len(x_test)} rows on the {target} target")
    s3, sm, runtime = aws.client("s3", target), aws.client("sagemaker", target), aws.client("sagemaker-runtime", target)
    sns, sqs = aws.client("sns", target), aws.client("sqs", target)
    run = uuid.uuid4().hex[:8]
    bucket, name = f"mf-sm-async-demo-{run}", f"mf-sm-async-demo-{run}"
    made: list[tuple] = []
    try:
        s3.create_bucket(Bucket=bucket)
        made.append(("bucket", bucket))
        with tempfile.TemporaryDirectory() as tmp:
            tarball = package_estimator(model, Path(tmp))
            s3.upload_file(str(tarball), bucket, "model/model.tar.gz")
        topic = sns.create_topic(Name=f"{name}-done")["TopicArn"]
        made.append(("topic", topic))
        queue = sqs.create_queue(QueueName=f"{name}-done")["QueueUrl"]
        made.append(("queue", queue))
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": SKLEARN_IMAGE, "ModelDataUrl": f"s3://{bucket}/model/model.tar.gz"})
        made.append(("model", name))
        sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1}], AsyncInferenceConfig={
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
            "OutputConfig": {"S3OutputPath": f"s3://{bucket}/out", "S3FailurePath": f"s3://{bucket}/failed",
                             "NotificationConfig": {"SuccessTopic": topic, "ErrorTopic": topic}}})
        made.append(("config", name))
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
        made.append(("endpoint", name))
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300})
        print(f"endpoint {name} InService after {time.monotonic() - started:.1f}s")

        pending = {}
        for start in range(0, len(x_test), rows_per_payload):
            rows = x_test[start:start + rows_per_payload]
            body = "".join(json.dumps(row.tolist()) + "\n" for row in rows).encode()
            answer = runtime.invoke_endpoint_async(
                EndpointName=name, Body=body, ContentType="application/jsonlines",
                Accept="application/jsonlines", InferenceId=f"{run}-{start}")
            pending[answer["InferenceId"]] = start
        predictions = [None] * len(x_test)
        while pending:
            messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=5).get("Messages", [])
            for message in messages:
                note = json.loads(json.loads(message["Body"])["Message"])
                if note.get("inferenceId") not in pending:
                    continue
                if note["invocationStatus"] != "Completed":
                    raise RuntimeError(f"payload {note['inferenceId']} failed: {note.get('failureReason')}")
                out_bucket, out_key = note["responseParameters"]["outputLocation"][5:].split("/", 1)
                lines = s3.get_object(Bucket=out_bucket, Key=out_key)["Body"].read().decode().splitlines()
                start = pending.pop(note["inferenceId"])
                predictions[start:start + len(lines)] = [json.loads(line) for line in lines]
            if messages:
                sqs.delete_message_batch(QueueUrl=queue, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        accuracy = sum(int(p == y) for p, y in zip(predictions, y_test)) / len(y_test)
        print(f"scored {len(x_test)} rows in {-(-len(x_test) // rows_per_payload)} payloads; "
              f"accuracy {accuracy:.3f}; total {time.monotonic() - started:.1f}s")
        return accuracy
    finally:
        _delete(made, s3, sm, sns, sqs)


def _delete(made, s3, sm, sns, sqs) -> None:
    for kind, ident in reversed(made):
        try:
            if kind == "endpoint":
                sm.delete_endpoint(EndpointName=ident)
            elif kind == "config":
                sm.delete_endpoint_config(EndpointConfigName=ident)
            elif kind == "model":
                sm.delete_model(ModelName=ident)
            elif kind == "queue":
                sqs.delete_queue(QueueUrl=ident)
            elif kind == "topic":
                sns.delete_topic(TopicArn=ident)
            elif kind == "bucket":
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ident):
                    for obj in page.get("Contents", []):
                        s3.delete_object(Bucket=ident, Key=obj["Key"])
                s3.delete_bucket(Bucket=ident)
        except Exception as exc:  # keep deleting the rest; say what stayed
            print(f"warning: could not delete {kind} {ident}: {exc}")
    print("deleted the endpoint, its config, model, topic, queue and bucket")
