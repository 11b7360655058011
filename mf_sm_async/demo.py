"""``mf-sm-async demo``: the whole asynchronous inference round trip on the local emulator.

Trains a scikit-learn classifier on the digits data that ships with scikit-learn, deploys it with
``AsyncEndpoint`` (teardown="delete"), sends the test rows as inline JSON Lines payloads, learns
completions from the endpoint's SNS -> SQS notifications, reads the outputs from S3, prints the accuracy,
and deletes the endpoint and everything made for it. The flow of the Metaflow issue replaces this as the README's main job.
"""

from __future__ import annotations

import json
import time
import uuid

from . import aws


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
    from .endpoint import AsyncEndpoint

    started = time.monotonic()
    model, x_test, y_test = _train()
    print(f"trained LogisticRegression on digits; scoring {len(x_test)} rows on the {target} target")
    runtime, sqs, s3 = aws.client("sagemaker-runtime", target), aws.client("sqs", target), aws.client("s3", target)
    run = uuid.uuid4().hex[:8]
    with AsyncEndpoint.deploy(model=model, name=f"mf-sm-async-demo-{run}", max_instances=1,
                              teardown="delete", target=target) as ep:
        print(f"endpoint {ep.name} InService after {time.monotonic() - started:.1f}s")
        queue = sqs.get_queue_url(QueueName=ep.resources.queue_name)["QueueUrl"]
        pending = {}
        for start in range(0, len(x_test), rows_per_payload):
            rows = x_test[start:start + rows_per_payload]
            body = "".join(json.dumps(row.tolist()) + "\n" for row in rows).encode()
            answer = runtime.invoke_endpoint_async(
                EndpointName=ep.name, Body=body, ContentType="application/jsonlines",
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
    print("deleted the endpoint, its config, model, topics, queue, scaling policies and alarm "
          "(results stay in S3)")
    return accuracy
