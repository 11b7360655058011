"""The emulator lifecycle test, on a real account: deploy an estimator, invoke, scale to zero, delete."""

import json
import os
import time

import pytest
from botocore.exceptions import ClientError

from mf_sm_async import AsyncEndpoint, aws

pytestmark = pytest.mark.aws


def test_lifecycle_on_aws():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    ep = AsyncEndpoint.deploy(model=model, target="aws", max_instances=1, teardown="delete",
                              instance_type=os.environ.get("MF_SM_ASYNC_TEST_INSTANCE_TYPE", "ml.m5.large"))
    try:
        body = "".join(json.dumps(r.tolist()) + "\n" for r in features[:5]).encode()
        answer = aws.client("sagemaker-runtime", "aws").invoke_endpoint_async(
            EndpointName=ep.name, Body=body, ContentType="application/jsonlines", Accept="application/jsonlines")
        bucket, key = answer["OutputLocation"][5:].split("/", 1)
        deadline = time.monotonic() + 900
        while True:
            try:
                output = aws.client("s3", "aws").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
                break
            except ClientError:
                assert time.monotonic() < deadline, "no output within 15 minutes"
                time.sleep(10)
        assert [json.loads(line) for line in output.splitlines()] == model.predict(features[:5]).tolist()
        ep.scale_to_zero()
    finally:
        ep.teardown()
    with pytest.raises(ClientError):
        aws.client("sagemaker", "aws").describe_endpoint(EndpointName=ep.name)
