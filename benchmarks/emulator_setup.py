"""What the benchmarks share: boto3 clients on a daemon's URL and an endpoint deployed the AWS way."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
from botocore.config import Config

SERVICES = ("s3", "sagemaker", "sagemaker-runtime", "sns", "sqs", "application-autoscaling", "cloudwatch")


def clients(url: str, pool: int) -> dict:
    config = Config(max_pool_connections=pool, retries={"mode": "standard", "max_attempts": 5})
    return {service: boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                                  aws_secret_access_key="testing", config=config) for service in SERVICES}


def deploy(c: dict, tarball: Path, *, max_concurrent: int, include_response: bool = False) -> tuple[str, str]:
    """Bucket, model, SNS topic -> SQS queue, async endpoint InService; returns (name, queue url)."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    c["s3"].create_bucket(Bucket=name)
    c["s3"].upload_file(str(tarball), name, "model.tar.gz")
    topic = c["sns"].create_topic(Name=name)["TopicArn"]
    queue = c["sqs"].create_queue(QueueName=name)["QueueUrl"]
    arn = c["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    c["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    c["sagemaker"].create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::123456789012:role/bench",
                                PrimaryContainer={"Image": "mf-sm-async/local-handler:latest", "ModelDataUrl": f"s3://{name}/model.tar.gz"})
    notification = {"SuccessTopic": topic, "ErrorTopic": topic}
    if include_response:
        notification["IncludeInferenceResponseIn"] = ["SUCCESS_NOTIFICATION_TOPIC"]
    c["sagemaker"].create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}],
        AsyncInferenceConfig={"ClientConfig": {"MaxConcurrentInvocationsPerInstance": max_concurrent},
                              "OutputConfig": {"S3OutputPath": f"s3://{name}/out", "NotificationConfig": notification}})
    c["sagemaker"].create_endpoint(EndpointName=name, EndpointConfigName=name)
    c["sagemaker"].get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1})
    return name, queue
