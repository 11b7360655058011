"""Scale to zero and back as AWS documents it, metrics through CloudWatch, instance faults: through boto3.

These tests run their own daemon at a time scale of 600 (an emulated minute is 0.1 s), so a whole
0 -> 1 -> 0 cycle with AWS's periods and datapoint counts takes seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from mf_sm_async.local import daemon
from mf_sm_async.local.daemon import pid_alive

from .conftest import Clients, create_deployment
from .test_endpoint_lifecycle import wait_for

SCALE = 600.0


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("fast-emulator")
    state = daemon.start(state_dir, time_scale=SCALE)
    yield Clients(state["url"])
    daemon.stop(state_dir)


def control(clients: Clients, route: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{clients.url}/_mf_sm_async/{route}", method="POST" if body else "GET",
                                     data=json.dumps(body).encode() if body else None)
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def counts(clients: Clients, name: str) -> dict:
    return control(clients, "counts")[f"us-east-1/{name}"]


def instances(clients: Clients, name: str) -> int:
    return clients.sagemaker.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["CurrentInstanceCount"]


def register_scaling(clients: Clients, name: str, *, step_policy: bool, max_capacity: int = 2) -> None:
    """The policies of AWS's 'autoscale an asynchronous endpoint' guide, verbatim but for the cool-downs."""
    autoscaling, resource = clients.application_autoscaling, f"endpoint/{name}/variant/AllTraffic"
    autoscaling.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource,
                                         ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                                         MinCapacity=0, MaxCapacity=max_capacity)
    autoscaling.put_scaling_policy(
        PolicyName="Invocations-ScalingPolicy", ServiceNamespace="sagemaker", ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 5.0,
            "CustomizedMetricSpecification": {"MetricName": "ApproximateBacklogSizePerInstance",
                                              "Namespace": "AWS/SageMaker",
                                              "Dimensions": [{"Name": "EndpointName", "Value": name}],
                                              "Statistic": "Average"},
            "ScaleInCooldown": 120, "ScaleOutCooldown": 120})
    if not step_policy:
        return
    step = autoscaling.put_scaling_policy(
        PolicyName="HasBacklogWithoutCapacity-ScalingPolicy", ServiceNamespace="sagemaker", ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", PolicyType="StepScaling",
        StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average",
                                        "Cooldown": 300,
                                        "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]})
    clients.cloudwatch.put_metric_alarm(
        AlarmName=f"{name}-has-backlog-without-capacity", MetricName="HasBacklogWithoutCapacity",
        Namespace="AWS/SageMaker", Statistic="Average", EvaluationPeriods=2, DatapointsToAlarm=2, Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="missing", Period=60,
        Dimensions=[{"Name": "EndpointName", "Value": name}], AlarmActions=[step["PolicyARN"]])


def invoke(dep, **fields) -> dict:
    return dep.clients.sagemaker_runtime.invoke_endpoint_async(
        EndpointName=dep.name, ContentType="application/json", Body=json.dumps({"op": "echo", **fields}).encode())


def test_scale_zero_to_one_to_zero_with_the_documented_policies(fast, tmp_path):
    dep = create_deployment(fast, tmp_path)
    register_scaling(fast, dep.name, step_policy=True)
    wait_for(lambda: instances(fast, dep.name) == 0, timeout=30, what="idle endpoint to scale in to 0")
    assert counts(fast, dep.name)["pids"] == []

    alarm_name = f"{dep.name}-has-backlog-without-capacity"
    states = set()

    def woke_up() -> bool:
        states.add(fast.cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"][0]["StateValue"])
        return instances(fast, dep.name) == 1

    def alarm() -> dict:
        return fast.cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"][0]

    assert alarm()["StateValue"] == "OK"
    before = alarm()["StateUpdatedTimestamp"]
    answer = invoke(dep, value="wake up")
    wait_for(woke_up, timeout=30, what="the alarm to start an instance")
    # On a loaded machine the whole ALARM spell (about the instance's start-up time) can fall between two
    # polls; a state updated since the invocation, from OK, went through ALARM.
    assert "ALARM" in states or alarm()["StateUpdatedTimestamp"] > before, (states, alarm())
    [note] = dep.notifications(1)
    assert note["invocationStatus"] == "Completed"
    assert json.loads(dep.read(answer["OutputLocation"]))["echo"] == "wake up"
    wait_for(lambda: instances(fast, dep.name) == 0, timeout=30, what="scale back in to 0")

    assert fast.cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"][0]["StateValue"] == "OK"

    def stat(metric: str, statistic: str) -> float:
        points = fast.cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker", MetricName=metric, Dimensions=[{"Name": "EndpointName", "Value": dep.name}],
            StartTime=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10),
            EndTime=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1), Period=600,
            Statistics=[statistic])["Datapoints"]
        return points[0][statistic]

    assert stat("HasBacklogWithoutCapacity", "Maximum") == 1.0
    assert stat("ApproximateBacklogSize", "Maximum") >= 1.0
    assert stat("ApproximateAgeOfOldestRequest", "Maximum") > 0.0
    assert stat("InvocationsProcessed", "Sum") == 1.0
    assert stat("InvocationFailures", "Sum") == 0.0
    data = fast.cloudwatch.get_metric_data(
        StartTime=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10),
        EndTime=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1),
        MetricDataQueries=[{"Id": "backlog", "MetricStat": {"Metric": {
            "Namespace": "AWS/SageMaker", "MetricName": "ApproximateBacklogSize",
            "Dimensions": [{"Name": "EndpointName", "Value": dep.name}]}, "Period": 600, "Stat": "Maximum"}}])
    assert max(data["MetricDataResults"][0]["Values"]) == 1.0


def test_without_the_step_policy_an_endpoint_at_zero_stays_there(fast, tmp_path):
    dep = create_deployment(fast, tmp_path)
    register_scaling(fast, dep.name, step_policy=False)
    wait_for(lambda: instances(fast, dep.name) == 0, timeout=30, what="idle endpoint to scale in to 0")
    invoke(dep, value="waits")
    time.sleep(3)  # 30 emulated minutes: far past any alarm period or cool-down
    assert instances(fast, dep.name) == 0
    assert counts(fast, dep.name)["backlog"] == 1
    with pytest.raises(AssertionError):
        dep.notifications(1, timeout=1)


def test_target_tracking_scales_out_under_backlog(fast, tmp_path):
    dep = create_deployment(fast, tmp_path, max_concurrent=1)
    register_scaling(fast, dep.name, step_policy=True, max_capacity=3)
    for i in range(40):
        invoke(dep, op="sleep", seconds=0.3, value=i)
    wait_for(lambda: instances(fast, dep.name) == 3, timeout=30, what="scale out to the maximum")
    dep.notifications(40, timeout=60)
    wait_for(lambda: instances(fast, dep.name) == 0, timeout=30, what="scale back in to 0")


def test_a_killed_instance_is_replaced_and_its_request_retried(fast, tmp_path):
    dep = create_deployment(fast, tmp_path)
    answer = invoke(dep, op="sleep", seconds=1.5, value="survivor")
    wait_for(lambda: counts(fast, dep.name)["backlog"] == 1 and counts(fast, dep.name)["queued"] == 0,
             what="the request to be in flight")
    killed = control(fast, "kill-instance", {"endpoint": dep.name})["killed"]
    [note] = dep.notifications(1, timeout=30)
    assert note["invocationStatus"] == "Completed"
    result = json.loads(dep.read(answer["OutputLocation"]))
    assert result["echo"] == "survivor" and result["pid"] != killed
    after = counts(fast, dep.name)
    assert after["instance_deaths"] == 1 and after["instances"] == 1
    assert after["per_inference_id"][answer["InferenceId"]] == 2  # tried, then retried once
    assert not pid_alive(killed)


def test_a_request_whose_instances_keep_dying_fails_after_one_retry(fast, tmp_path):
    dep = create_deployment(fast, tmp_path)
    answer = invoke(dep, op="sleep", seconds=2, value="doomed")
    killed: list[int] = []

    def in_flight_on_a_fresh_instance() -> bool:
        now = counts(fast, dep.name)
        return bool(now["pids"]) and now["pids"][0] not in killed and now["queued"] == 0 and now["backlog"] == 1

    for attempt in range(2):
        wait_for(in_flight_on_a_fresh_instance, timeout=30, what=f"attempt {attempt + 1} in flight")
        killed.append(control(fast, "kill-instance", {"endpoint": dep.name})["killed"])
    [note] = dep.notifications(1, timeout=30)
    assert note["invocationStatus"] == "Failed"
    assert "exited while processing" in note["failureReason"]
    assert "died while processing" in dep.read(answer["FailureLocation"]).decode()


def test_throttling_fault_is_retried_by_an_unmodified_client(fast, tmp_path):
    import boto3
    from botocore.config import Config

    dep = create_deployment(fast, tmp_path)
    control(fast, "faults", {"kind": "throttle", "count": 2, "endpoint": dep.name})
    runtime = boto3.client("sagemaker-runtime", endpoint_url=fast.url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing",
                           config=Config(retries={"mode": "standard", "max_attempts": 5}))
    answer = runtime.invoke_endpoint_async(EndpointName=dep.name, ContentType="application/json",
                                           Body=b'{"op": "echo", "value": "after throttling"}')
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    dep.notifications(1)
    assert counts(fast, dep.name)["received"] == 1


def test_s3_slowdown_fault(fast, tmp_path):
    import boto3
    from botocore.config import Config

    dep = create_deployment(fast, tmp_path)
    control(fast, "faults", {"kind": "s3_slowdown", "count": 1, "bucket": dep.bucket})
    no_retries = boto3.client("s3", endpoint_url=fast.url, region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as error:
        no_retries.put_object(Bucket=dep.bucket, Key="a", Body=b"x")
    assert error.value.response["Error"]["Code"] == "SlowDown"
    control(fast, "faults", {"kind": "s3_slowdown", "count": 2, "bucket": dep.bucket, "method": "PUT"})
    retrying = boto3.client("s3", endpoint_url=fast.url, region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing", config=Config(retries={"max_attempts": 5}))
    assert retrying.put_object(Bucket=dep.bucket, Key="b", Body=b"x")["ResponseMetadata"]["RetryAttempts"] == 2
    assert fast.s3.get_object(Bucket=dep.bucket, Key="b")["Body"].read() == b"x"


def test_lost_notifications_leave_the_outputs_in_s3(fast, tmp_path):
    # One request at a time, so the third (the one still notified) is also the last to finish.
    dep = create_deployment(fast, tmp_path, max_concurrent=1)
    control(fast, "faults", {"kind": "lose_notification", "count": 2, "endpoint": dep.name})
    answers = [invoke(dep, value=i) for i in range(3)]
    assert len(dep.notifications(1)) == 1
    with pytest.raises(AssertionError):
        dep.notifications(1, timeout=1)
    keys = {o["Key"] for o in fast.s3.list_objects_v2(Bucket=dep.bucket, Prefix="out/")["Contents"]}
    assert keys == {a["OutputLocation"].split("/", 3)[3] for a in answers}


def test_unknown_fault_kind_is_refused(fast):
    with pytest.raises(urllib.error.HTTPError) as error:
        control(fast, "faults", {"kind": "meteor", "count": 1})
    assert error.value.code == 400
    assert "meteor" in json.loads(error.value.read())["message"]


def test_aws_cli_sets_up_scale_to_zero_and_reads_the_metrics(fast, tmp_path):
    """The same setup through the aws CLI, as the AWS guide's CLI examples do it."""
    import os
    import subprocess

    from mf_sm_async.aws import local_env

    from .test_aws_cli import AWS

    env = {**os.environ, **local_env(fast.url)}

    def aws(*args: str) -> dict:
        result = subprocess.run([AWS, *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if result.stdout.strip() else {}

    dep = create_deployment(fast, tmp_path)
    resource = f"endpoint/{dep.name}/variant/AllTraffic"
    dimension = "sagemaker:variant:DesiredInstanceCount"
    aws("application-autoscaling", "register-scalable-target", "--service-namespace", "sagemaker",
        "--resource-id", resource, "--scalable-dimension", dimension, "--min-capacity", "0", "--max-capacity", "1")
    aws("application-autoscaling", "put-scaling-policy", "--policy-name", "backlog", "--service-namespace",
        "sagemaker", "--resource-id", resource, "--scalable-dimension", dimension, "--policy-type",
        "TargetTrackingScaling", "--target-tracking-scaling-policy-configuration", json.dumps({
            "TargetValue": 5.0, "ScaleInCooldown": 60, "ScaleOutCooldown": 60,
            "CustomizedMetricSpecification": {"MetricName": "ApproximateBacklogSizePerInstance",
                                              "Namespace": "AWS/SageMaker", "Statistic": "Average",
                                              "Dimensions": [{"Name": "EndpointName", "Value": dep.name}]}}))
    step = aws("application-autoscaling", "put-scaling-policy", "--policy-name", "wake", "--service-namespace",
               "sagemaker", "--resource-id", resource, "--scalable-dimension", dimension, "--policy-type",
               "StepScaling", "--step-scaling-policy-configuration", json.dumps({
                   "AdjustmentType": "ChangeInCapacity", "Cooldown": 60,
                   "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]}))
    aws("cloudwatch", "put-metric-alarm", "--alarm-name", f"{dep.name}-wake", "--metric-name",
        "HasBacklogWithoutCapacity", "--namespace", "AWS/SageMaker", "--statistic", "Average", "--period", "60",
        "--evaluation-periods", "2", "--datapoints-to-alarm", "2", "--threshold", "1", "--comparison-operator",
        "GreaterThanOrEqualToThreshold", "--dimensions", f"Name=EndpointName,Value={dep.name}",
        "--alarm-actions", step["PolicyARN"])
    wait_for(lambda: aws("sagemaker", "describe-endpoint", "--endpoint-name", dep.name)
             ["ProductionVariants"][0]["CurrentInstanceCount"] == 0, timeout=30, what="scale in to 0")
    invoke(dep, value="cli")
    [note] = dep.notifications(1, timeout=30)
    assert note["invocationStatus"] == "Completed"
    stats = aws("cloudwatch", "get-metric-statistics", "--namespace", "AWS/SageMaker", "--metric-name",
                "InvocationsProcessed", "--dimensions", f"Name=EndpointName,Value={dep.name}",
                "--start-time", (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)).isoformat(),
                "--end-time", (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)).isoformat(),
                "--period", "600", "--statistics", "Sum")
    assert stats["Datapoints"][0]["Sum"] == 1.0
