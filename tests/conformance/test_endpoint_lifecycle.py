"""The SageMaker control plane answers as AWS does, and its answers are true to the running processes."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from mf_sm_async.local.daemon import pid_alive

from .conftest import IMAGE, ROLE, make_bucket


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def serving_pids(dep, count: int) -> set[int]:
    """The pids of the model-server processes that answered ``count`` requests."""
    runtime = dep.clients.sagemaker_runtime
    answers = [runtime.invoke_endpoint_async(EndpointName=dep.name, ContentType="application/json",
                                             Body=json.dumps({"op": "sleep", "seconds": 0.3}).encode())
               for _ in range(count)]
    dep.notifications(count)
    return {json.loads(dep.read(a["OutputLocation"]))["pid"] for a in answers}


def test_creating_then_in_service_with_async_config_returned_intact(deploy, clients):
    dep = deploy("slowload", wait=False, max_concurrent=7)
    first = clients.sagemaker.describe_endpoint(EndpointName=dep.name)
    assert first["EndpointStatus"] == "Creating"
    clients.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=dep.name, WaiterConfig={"Delay": 1})
    described = clients.sagemaker.describe_endpoint(EndpointName=dep.name)
    assert described["EndpointStatus"] == "InService"
    config = described["AsyncInferenceConfig"]
    assert config["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 7}
    assert config["OutputConfig"]["S3OutputPath"] == f"s3://{dep.bucket}/out"
    assert config["OutputConfig"]["NotificationConfig"]["SuccessTopic"] == dep.success_topic
    assert clients.sagemaker.describe_endpoint_config(EndpointConfigName=dep.name)["AsyncInferenceConfig"] == config
    [variant] = described["ProductionVariants"]
    assert variant["CurrentInstanceCount"] == 1 and variant["DesiredInstanceCount"] == 1
    listed = {e["EndpointName"]: e["EndpointStatus"] for e in clients.sagemaker.list_endpoints()["Endpoints"]}
    assert listed[dep.name] == "InService"


def test_test_notification_is_published_on_create(deploy, clients):
    dep = deploy()
    messages = clients.sqs.receive_message(QueueUrl=dep.queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=2).get("Messages", [])
    events = [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
    assert [e["eventName"] for e in events] == ["TestNotification", "TestNotification"]  # both topics


def test_a_model_that_cannot_load_fails_the_endpoint_with_its_reason(deploy, clients):
    dep = deploy("broken", wait=False)
    described = wait_for(lambda: (d := clients.sagemaker.describe_endpoint(EndpointName=dep.name))
                         ["EndpointStatus"] == "Failed" and d, what="endpoint Failed")
    assert "weights are corrupt" in described["FailureReason"]
    with pytest.raises(ClientError, match="not in service"):
        clients.sagemaker_runtime.invoke_endpoint_async(EndpointName=dep.name, Body=b"{}")


@pytest.mark.parametrize("instance_type", ["ml.g5.xlarge", "ml.g6.12xlarge", "ml.inf2.xlarge", "ml.p5.48xlarge",
                                           "ml.m7i.large"])
def test_current_instance_types_are_accepted(clients, instance_type):
    bucket = make_bucket(clients)
    name = f"it-{uuid.uuid4().hex[:8]}"
    clients.sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE,
                                   PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/m.tar.gz"})
    clients.sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "v", "ModelName": name, "InstanceType": instance_type, "InitialInstanceCount": 1}])
    assert clients.sagemaker.describe_endpoint_config(EndpointConfigName=name)[
        "ProductionVariants"][0]["InstanceType"] == instance_type


@pytest.mark.parametrize("bad,field", [
    ({"InstanceType": "m5.large"}, "instanceType"),
    ({"InitialInstanceCount": 0}, "initialInstanceCount"),
    ({"async": {"ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1001}}}, "maxConcurrentInvocationsPerInstance"),
    ({"async": {"OutputConfig": {"S3OutputPath": "bucket/out"}}}, "s3OutputPath"),
    ({"async": {"OutputConfig": {"S3OutputPath": "s3://b/o", "NotificationConfig": {"SuccessTopic": "topic"}}}},
     "SuccessTopic"),
    ({"async": {"OutputConfig": {"S3OutputPath": "s3://b/o", "NotificationConfig": {
        "IncludeInferenceResponseIn": ["ALWAYS"]}}}}, "includeInferenceResponseIn"),
])
def test_bad_endpoint_configs_are_refused_naming_the_field(clients, bad, field):
    """Checked by the server itself: this client skips boto3's own parameter validation."""
    import boto3
    from botocore.config import Config

    sagemaker = boto3.client("sagemaker", endpoint_url=clients.url, region_name="us-east-1",
                             aws_access_key_id="testing", aws_secret_access_key="testing",
                             config=Config(parameter_validation=False))
    name = f"bad-{uuid.uuid4().hex[:8]}"
    clients.sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    variant = {"VariantName": "v", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    variant.update({k: v for k, v in bad.items() if k != "async"})
    extra = {"AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "s3://b/o"}, **bad["async"]}} if "async" in bad else {}
    with pytest.raises(ClientError) as error:
        sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant], **extra)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert field in error.value.response["Error"]["Message"]


def test_existing_endpoint_name_is_refused(deploy, clients):
    dep = deploy()
    with pytest.raises(ClientError, match="already existing"):
        clients.sagemaker.create_endpoint(EndpointName=dep.name, EndpointConfigName=dep.name)


def test_instance_count_follows_update_weights_and_capacities_to_two_and_to_zero(deploy, clients):
    dep = deploy(max_concurrent=1)
    [first_pid] = serving_pids(dep, 2)
    clients.sagemaker.update_endpoint_weights_and_capacities(EndpointName=dep.name, DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}])
    clients.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=dep.name, WaiterConfig={"Delay": 1})
    variant = clients.sagemaker.describe_endpoint(EndpointName=dep.name)["ProductionVariants"][0]
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (2, 2)
    pids = serving_pids(dep, 6)
    assert len(pids) == 2 and first_pid in pids  # two real processes shared the work

    clients.sagemaker.update_endpoint_weights_and_capacities(EndpointName=dep.name, DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 0}])
    clients.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=dep.name, WaiterConfig={"Delay": 1})
    variant = clients.sagemaker.describe_endpoint(EndpointName=dep.name)["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == 0
    wait_for(lambda: not any(pid_alive(p) for p in pids), what="model servers to exit")


def test_update_endpoint_switches_to_the_new_config(deploy, clients, tmp_path):
    dep = deploy()
    [old_pid] = serving_pids(dep, 1)
    new = f"{dep.name}-v2"
    clients.sagemaker.create_endpoint_config(EndpointConfigName=new, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": dep.name, "InstanceType": "ml.g6.xlarge",
        "InitialInstanceCount": 1}], AsyncInferenceConfig={"OutputConfig": {
            "S3OutputPath": f"s3://{dep.bucket}/out-v2",
            "NotificationConfig": {"SuccessTopic": dep.success_topic, "ErrorTopic": dep.error_topic}}})
    clients.sagemaker.update_endpoint(EndpointName=dep.name, EndpointConfigName=new)
    assert clients.sagemaker.describe_endpoint(EndpointName=dep.name)["EndpointStatus"] == "Updating"
    clients.sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=dep.name, WaiterConfig={"Delay": 1})
    described = clients.sagemaker.describe_endpoint(EndpointName=dep.name)
    assert described["EndpointConfigName"] == new
    assert described["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"].endswith("/out-v2")
    answer = clients.sagemaker_runtime.invoke_endpoint_async(EndpointName=dep.name, Body=b'{"op": "echo"}',
                                                             ContentType="application/json")
    assert answer["OutputLocation"].startswith(f"s3://{dep.bucket}/out-v2/")
    dep.notifications(1)
    assert json.loads(dep.read(answer["OutputLocation"]))["pid"] != old_pid
    wait_for(lambda: not pid_alive(old_pid), what="old instance to stop")


def test_delete_endpoint_stops_its_processes_and_forgets_it(deploy, clients):
    dep = deploy()
    [pid] = serving_pids(dep, 1)
    clients.sagemaker.delete_endpoint(EndpointName=dep.name)
    assert not pid_alive(pid)
    assert dep.name not in [e["EndpointName"] for e in clients.sagemaker.list_endpoints()["Endpoints"]]
    with pytest.raises(ClientError, match="Could not find endpoint"):
        clients.sagemaker.describe_endpoint(EndpointName=dep.name)
    with pytest.raises(ClientError, match="not found"):
        clients.sagemaker_runtime.invoke_endpoint_async(EndpointName=dep.name, Body=b"{}")
