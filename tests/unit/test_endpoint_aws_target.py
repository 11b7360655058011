"""The AWS target's exact requests, against moto's in-process control plane (no server, no network):
what deploy would send to AWS, in order, and that a failure at any step leaves nothing behind."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mf_sm_async import AsyncEndpoint, ConfigError, DeployError, aws

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
STEPS = ["PutObject", "CreateModel", "CreateTopic", "CreateEndpointConfig", "CreateEndpoint", "RegisterScalableTarget", "PutScalingPolicy", "PutMetricAlarm"]


@pytest.fixture
def aws_target(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "fake", "AWS_SECRET_ACCESS_KEY": "fake", "AWS_DEFAULT_REGION": "us-east-1",
                       "MF_SM_ASYNC_TARGET": "aws"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("MF_SM_ASYNC_ROLE_ARN", raising=False)
    monkeypatch.setattr(aws, "_clients", {})
    with mock_aws():
        calls: list[tuple[str, dict]] = []

        def record(model, params, **_):
            calls.append((model.name, params))
        for service in ("s3", "sagemaker", "sns", "sqs", "application-autoscaling", "cloudwatch", "sts"):
            aws.client(service).meta.events.register("provide-client-params.*.*", record)
        aws.client("iam").create_role(RoleName=ROLE.rsplit("/", 1)[1], AssumeRolePolicyDocument=json.dumps(TRUST))
        DECISIONS.clear()
        aws.client("iam").meta.events.register("before-call.iam.SimulatePrincipalPolicy", simulate)
        yield calls


@pytest.fixture(scope="module")
def estimator():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])


def inventory() -> dict:
    sm = aws.client("sagemaker")
    return {"endpoints": sm.list_endpoints()["Endpoints"], "configs": sm.list_endpoint_configs()["EndpointConfigs"],
            "models": sm.list_models()["Models"], "topics": aws.client("sns").list_topics()["Topics"],
            "queues": aws.client("sqs").list_queues().get("QueueUrls", []),
            "alarms": aws.client("cloudwatch").describe_alarms()["MetricAlarms"],
            "targets": aws.client("application-autoscaling").describe_scalable_targets(
                ServiceNamespace="sagemaker")["ScalableTargets"]}


def test_deploy_sends_exactly_what_aws_needs(aws_target, estimator):
    ep = AsyncEndpoint.deploy(model=estimator, role_arn=ROLE, image_uri=IMAGE, max_instances=3,
                              max_concurrent_invocations_per_instance=8)
    ep.lease.release()
    calls = aws_target
    made = [name for name, _ in calls if name in STEPS]
    assert made[:2] == ["PutObject", "CreateModel"]  # the tarball is uploaded before the model names it
    assert made.index("CreateTopic") < made.index("CreateEndpointConfig")
    assert made.index("CreateEndpoint") < made.index("RegisterScalableTarget") < made.index("PutMetricAlarm")
    params = {name: p for name, p in calls}
    model = params["CreateModel"]
    assert model["ExecutionRoleArn"] == ROLE and model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"].endswith(f"/{ep.name}/model/model.tar.gz")
    # the scikit-learn image imports nothing by default: it must be told where code/inference.py is
    assert model["PrimaryContainer"]["Environment"] == {"SAGEMAKER_PROGRAM": "inference.py",
                                                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    config = params["CreateEndpointConfig"]
    assert config["AsyncInferenceConfig"] == {
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 8},
        "OutputConfig": {"S3OutputPath": ep.resources.output_path, "S3FailurePath": ep.resources.failure_path,
                         "NotificationConfig": {"SuccessTopic": ep.resources.success_topic,
                                                "ErrorTopic": ep.resources.error_topic,
                                                "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"]}}}
    assert {"Key": "mf-sm-async:managed", "Value": "true"} in config["Tags"]
    target = params["RegisterScalableTarget"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 3)
    policies = {p["PolicyType"]: p for n, p in calls if n == "PutScalingPolicy"}
    tracking = policies["TargetTrackingScaling"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    step = policies["StepScaling"]["StepScalingPolicyConfiguration"]
    assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    alarm = params["PutMetricAlarm"]
    assert (alarm["MetricName"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "HasBacklogWithoutCapacity", "GreaterThanOrEqualToThreshold", 1)
    assert alarm["AlarmActions"][0].startswith("arn:aws:autoscaling:")


@pytest.mark.parametrize("failing", [s for s in STEPS if s != "PutObject"])
def test_a_failure_at_any_step_deletes_what_was_made(aws_target, estimator, failing):
    before = inventory()

    def fail(model, **_):
        if model.name == failing:
            raise ClientError({"Error": {"Code": "ResourceLimitExceeded", "Message": f"{failing} refused"}}, failing)
    for service in ("sagemaker", "sns", "sqs", "application-autoscaling", "cloudwatch"):
        aws.client(service).meta.events.register("provide-client-params.*.*", fail)
    with pytest.raises(DeployError) as error:
        AsyncEndpoint.deploy(model=estimator, role_arn=ROLE, image_uri=IMAGE)
    assert f"{failing} refused" in str(error.value) and "nothing left behind" in str(error.value)
    assert "quota" in (error.value.hint or "")
    assert inventory() == before


def test_the_default_image_is_the_scikit_learn_image_of_the_pickling_version(aws_target, estimator):
    import sklearn

    ep = AsyncEndpoint.deploy(model=estimator, role_arn=ROLE)
    ep.lease.release()
    image = dict(aws_target)["CreateModel"]["PrimaryContainer"]["Image"]
    major_minor = ".".join(sklearn.__version__.split(".")[:2])
    assert f"/sagemaker-scikit-learn:{major_minor}-" in image


def test_the_aws_target_needs_a_role(aws_target, estimator):
    with pytest.raises(ConfigError) as error:
        AsyncEndpoint.deploy(model=estimator, image_uri=IMAGE)
    assert error.value.field == "role_arn"


DECISIONS: dict[str, str] = {}  # action -> IAM's decision for our role, "allowed" when absent


def simulate(params, **_):
    """Answer iam:SimulatePrincipalPolicy (which moto lacks) as IAM would, from DECISIONS."""
    action = params["body"]["ActionNames.member.1"]  # the serialised query request
    answer = {"EvaluationResults": [{"EvalActionName": action, "EvalDecision": DECISIONS.get(action, "allowed")}]}
    return SimpleNamespace(status_code=200), answer


def test_a_role_that_may_not_publish_is_refused_before_anything_is_made(aws_target, estimator):
    DECISIONS["sns:Publish"] = "implicitDeny"
    before = inventory()
    with pytest.raises(DeployError) as error:
        AsyncEndpoint.deploy(model=estimator, role_arn=ROLE, image_uri=IMAGE)
    assert "sns:Publish" in str(error.value) and ROLE in str(error.value)
    assert "s3:PutObject" not in str(error.value)
    assert inventory() == before and not [n for n, _ in aws_target if n in STEPS]


def test_a_role_sagemaker_cannot_assume_is_refused(aws_target, estimator):
    other = "arn:aws:iam::123456789012:role/LambdaOnly"
    aws.client("iam").create_role(RoleName="LambdaOnly", AssumeRolePolicyDocument=json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}}]}))
    with pytest.raises(DeployError) as error:
        AsyncEndpoint.deploy(model=estimator, role_arn=other, image_uri=IMAGE)
    assert "sagemaker.amazonaws.com" in str(error.value) and "trust policy" in str(error.value)


def test_a_role_that_does_not_exist_is_named(aws_target, estimator):
    missing = "arn:aws:iam::123456789012:role/Typo"
    with pytest.raises(DeployError) as error:
        AsyncEndpoint.deploy(model=estimator, role_arn=missing, image_uri=IMAGE)
    assert "no such role" in str(error.value) and missing in str(error.value)


def test_a_caller_who_may_not_read_iam_still_deploys(aws_target, estimator):
    def refuse(**_):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "GetRole")
    aws.client("iam").meta.events.register("before-call.iam.GetRole", refuse)
    ep = AsyncEndpoint.deploy(model=estimator, role_arn=ROLE, image_uri=IMAGE)
    ep.lease.release()
    assert ep.status().status == "InService"


def test_endpoint_logs_on_aws_are_the_last_lines_of_the_newest_instance_streams(aws_target):
    from mf_sm_async.endpoint import container_logs

    logs, group = aws.client("logs"), "/aws/sagemaker/Endpoints/my-ep"
    logs.create_log_group(logGroupName=group)
    now_ms = int(time.time() * 1000)  # CloudWatch refuses events older than 14 days
    for stream, start in (("AllTraffic/i-old", now_ms - 60_000), ("AllTraffic/i-new", now_ms - 30_000)):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": start + n, "message": f"{stream} line {n}"} for n in range(100)])
    text = container_logs("my-ep", lines=5)
    assert "AllTraffic/i-new line 99" in text and "AllTraffic/i-new line 95" in text
    assert "AllTraffic/i-new line 94" not in text
    assert text.index("i-old line 99") < text.index("i-new line 99")  # the newest stream last, nearest the prompt
    with pytest.raises(DeployError) as error:
        container_logs("no-such-endpoint")
    assert "/aws/sagemaker/Endpoints/no-such-endpoint" in str(error.value)


def test_a_runs_queue_lets_exactly_the_endpoints_topics_deliver_and_is_gone_after(aws_target):
    from mf_sm_async.batch.completion import NotificationQueue
    from mf_sm_async.batch.run import RunPaths

    sns, sqs = aws.client("sns"), aws.client("sqs")
    topics = [sns.create_topic(Name=n)["TopicArn"] for n in ("ep-success", "ep-error")]
    run = RunPaths("run-1", "bucket", "prefix", "s3://bucket/prefix/outputs", None)
    queue = NotificationQueue(sqs, sns, run, topics)
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["Policy"])
                        ["Attributes"]["Policy"])["Statement"][0]
    assert policy["Principal"] == {"Service": "sns.amazonaws.com"} and policy["Action"] == "sqs:SendMessage"
    assert policy["Condition"]["ArnEquals"]["aws:SourceArn"] == topics
    assert {s["TopicArn"] for s in sns.list_subscriptions()["Subscriptions"]} == set(topics)
    queue.close()
    assert sns.list_subscriptions()["Subscriptions"] == [] and not sqs.list_queues().get("QueueUrls")
