"""The steps that create an AsyncEndpoint's resources, in order, and undo them: on a failure half way
(nothing orphaned) and for ``delete``. Each step records what it made before the next one starts."""

from __future__ import annotations

import datetime as dt
import logging

from botocore.exceptions import ClientError

from .errors import DeployError
from .images import (LOCAL_HANDLER_IMAGE, SCRIPT_IN_MODEL_ENV, SKLEARN, parse_image_uri, sklearn_image,
                     warn_if_no_aws_image)
from .role_check import check_role, needed_permissions

log = logging.getLogger(__name__)


def _tags(endpoint) -> list[dict]:
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [{"Key": "mf-sm-async:managed", "Value": "true"}, {"Key": "mf-sm-async:created", "Value": created},
            *({"Key": k, "Value": v} for k, v in endpoint.spec.tags)]


class _Builder:
    def __init__(self, endpoint, source, role: str):
        self.ep = endpoint
        self.r = endpoint.resources
        self.source = source
        self.role = role
        self.made: list[tuple[str, str]] = []

    def build(self) -> None:
        if self.ep.target != "local":  # the emulator, like moto, does not enforce IAM
            self._check_role()
        steps = [("S3 prefix", self._bucket), ("model", self._model), ("notifications", self._notifications),
                 ("endpoint config", self._config), ("endpoint", self._endpoint), ("autoscaling", self._autoscaling)]
        for label, step in steps:
            try:
                step()
            except Exception as error:
                message = error.response["Error"]["Message"] if isinstance(error, ClientError) else str(error)
                code = error.response["Error"]["Code"] if isinstance(error, ClientError) else None
                undone = self.undo()
                hint = _hint(code, self.ep.spec.instance_type)
                raise DeployError(f"deploy of {self.r.name} failed at the {label} step: {message}; "
                                  f"deleted what it had made ({undone})", hint) from error

    def undo(self) -> str:
        failures = _delete_made(self.ep, list(reversed(self.made)))
        return "nothing left behind" if not failures else "could not delete: " + ", ".join(failures)

    def _client(self, service):
        return self.ep._client(service)

    def _check_role(self) -> None:
        topics = [self.r.success_topic, self.r.error_topic] if self.ep.spec.notifications else []
        check_role(self._client("iam"), self.role, needed_permissions(self.r.bucket, self.r.prefix, topics))

    def _bucket(self) -> None:
        s3 = self._client("s3")
        try:
            s3.head_bucket(Bucket=self.r.bucket)
        except ClientError:
            s3.create_bucket(Bucket=self.r.bucket) if self.r.region == "us-east-1" else s3.create_bucket(
                Bucket=self.r.bucket, CreateBucketConfiguration={"LocationConstraint": self.r.region})
            # a bucket is shared by every endpoint and keeps results: it is never deleted by us

    def _model(self) -> None:
        source = self.source
        if source.model_name:
            self.model_name = source.model_name  # the user's own model: used, never deleted
            return
        url = source.s3_uri
        if source.tarball is not None:
            key = f"{self.r.prefix}/model/model.tar.gz"
            self._client("s3").upload_file(str(source.tarball), self.r.bucket, key)
            url = f"s3://{self.r.bucket}/{key}"
        image = self.ep.spec.image_uri or self._default_image()
        container = {"Image": image, "ModelDataUrl": url}
        # Our tarballs hold code/inference.py, which framework images import only when told where it is
        # (the scikit-learn image has no default at all); a built-in algorithm's own tarball must not get
        # SAGEMAKER_PROGRAM, which would switch it to script mode.
        if source.tarball is not None or parse_image_uri(image).kind == SKLEARN:
            container["Environment"] = dict(SCRIPT_IN_MODEL_ENV)
        self._client("sagemaker").create_model(
            ModelName=self.r.model, ExecutionRoleArn=self.role, Tags=_tags(self.ep), PrimaryContainer=container)
        self.made.append(("model", self.r.model))
        self.model_name = self.r.model

    def _default_image(self) -> str:
        version = self.source.sklearn_version
        if self.ep.target == "local":
            if version:
                warn_if_no_aws_image(version)
            return LOCAL_HANDLER_IMAGE  # the emulator serves code/inference.py itself
        if not version:
            raise DeployError("no image for this model on AWS: only a packaged scikit-learn estimator gets one "
                              "by default", "pass image_uri=")
        return sklearn_image(version, self.r.region, self.ep.spec.instance_type)

    def _notifications(self) -> None:
        """The success and error topics. Each run subscribes a queue of its own to them for as long as it
        runs (see batch/completion.py): a queue of the endpoint's own would fill with messages no one reads."""
        if not self.ep.spec.notifications:
            return
        for arn in (self.r.success_topic, self.r.error_topic):
            self._client("sns").create_topic(Name=arn.rsplit(":", 1)[1], Tags=_tags(self.ep))
            self.made.append(("topic", arn))

    def _config(self) -> None:
        spec = self.ep.spec
        output = {"S3OutputPath": self.r.output_path, "S3FailurePath": self.r.failure_path}
        if spec.kms_key_id:
            output["KmsKeyId"] = spec.kms_key_id  # SageMaker encrypts the outputs and failures with it
        if spec.notifications:
            # outputs up to 128 KB ride in the success notification: the engine then needs no download
            output["NotificationConfig"] = {"SuccessTopic": self.r.success_topic, "ErrorTopic": self.r.error_topic,
                                            "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"]}
        self._client("sagemaker").create_endpoint_config(
            EndpointConfigName=self.r.config, Tags=_tags(self.ep),
            ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": self.model_name,
                                 "InstanceType": spec.instance_type, "InitialInstanceCount": spec.initial_instances}],
            AsyncInferenceConfig={
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": spec.max_concurrent_invocations_per_instance},
                "OutputConfig": output})
        self.made.append(("config", self.r.config))

    def _endpoint(self) -> None:
        self._client("sagemaker").create_endpoint(EndpointName=self.r.name, EndpointConfigName=self.r.config,
                                                  Tags=_tags(self.ep))
        self.made.append(("endpoint", self.r.name))
        self.ep._wait_in_service()

    def _autoscaling(self) -> None:
        spec, scaling = self.ep.spec, self._client("application-autoscaling")
        scaling.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=self.r.resource_id,
                                         ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                                         MinCapacity=spec.min_instances, MaxCapacity=spec.max_instances)
        self.made.append(("scalable target", self.r.resource_id))
        common = {"ServiceNamespace": "sagemaker", "ResourceId": self.r.resource_id,
                  "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}
        scaling.put_scaling_policy(
            PolicyName=f"{self.r.name}-backlog", PolicyType="TargetTrackingScaling", **common,
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": float(spec.backlog_per_instance_target),
                "CustomizedMetricSpecification": {
                    "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                    "Dimensions": [{"Name": "EndpointName", "Value": self.r.name}], "Statistic": "Average"},
                "ScaleInCooldown": spec.scale_in_cooldown_seconds, "ScaleOutCooldown": spec.scale_out_cooldown_seconds})
        step = scaling.put_scaling_policy(
            PolicyName=f"{self.r.name}-wake", PolicyType="StepScaling", **common,
            StepScalingPolicyConfiguration={
                "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average",
                "Cooldown": spec.scale_out_cooldown_seconds,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]})
        self._client("cloudwatch").put_metric_alarm(
            AlarmName=self.r.alarm, MetricName="HasBacklogWithoutCapacity", Namespace="AWS/SageMaker",
            Statistic="Average", Period=60, EvaluationPeriods=2, DatapointsToAlarm=2, Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="missing",
            Dimensions=[{"Name": "EndpointName", "Value": self.r.name}], AlarmActions=[step["PolicyARN"]],
            Tags=_tags(self.ep))
        self.made.append(("alarm", self.r.alarm))


def _hint(code: str | None, instance_type: str) -> str | None:
    if code == "ResourceLimitExceeded":
        return (f"the account's quota '{instance_type} for endpoint usage' is too low (new accounts often have 0 "
                "for GPU types): request an increase in Service Quotas, or deploy with another instance_type")
    return None


def _all_kinds(endpoint) -> list[tuple[str, str]]:
    r = endpoint.resources
    made = [("alarm", r.alarm), ("scalable target", r.resource_id), ("endpoint", r.name), ("config", r.config),
            ("model", r.model)]
    return made + [("topic", r.error_topic), ("topic", r.success_topic)]


def _delete_all(endpoint) -> None:
    failures = _delete_made(endpoint, _all_kinds(endpoint))
    if failures:
        raise DeployError(f"could not delete all of {endpoint.name}: {', '.join(failures)}",
                          f"run `mf-sm-async endpoints teardown {endpoint.name} --delete` again")


def _delete_made(endpoint, made: list[tuple[str, str]]) -> list[str]:
    """Delete in the given order; a resource already gone is fine. Returns what could not be deleted."""
    failures = []
    for kind, ident in made:
        try:
            _delete_one(endpoint, kind, ident)
        except ClientError as error:
            text = str(error)
            if not any(gone in text for gone in ("Could not find", "NotFound", "does not exist", "No scalable",
                                                 "NonExistent", "ResourceNotFound")):
                failures.append(f"{kind} {ident} ({error.response['Error']['Code']})")
    return failures


def _delete_one(endpoint, kind: str, ident: str) -> None:
    client = endpoint._client
    if kind == "alarm":
        client("cloudwatch").delete_alarms(AlarmNames=[ident])
    elif kind == "scalable target":
        client("application-autoscaling").deregister_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=ident, ScalableDimension="sagemaker:variant:DesiredInstanceCount")
    elif kind == "endpoint":
        client("sagemaker").delete_endpoint(EndpointName=ident)
    elif kind == "config":
        client("sagemaker").delete_endpoint_config(EndpointConfigName=ident)
    elif kind == "model":
        client("sagemaker").delete_model(ModelName=ident)
    elif kind == "topic":
        client("sns").delete_topic(TopicArn=ident)
