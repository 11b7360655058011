"""SageMaker control-plane operations where moto falls short, answered on top of moto's own state.

moto stores models, endpoint configs and endpoints; this layer validates endpoint configs the way
AWS does (current instance types, AsyncInferenceConfig ranges), starts and stops the real runtime
behind each endpoint, and makes DescribeEndpoint tell the truth: Creating -> InService / Failed,
instance counts of the running processes, AsyncInferenceConfig returned intact. UpdateEndpoint,
which moto lacks, and UpdateEndpointWeightsAndCapacities drive the runtime.
"""

from __future__ import annotations

import re
import threading

from moto.sagemaker.models import sagemaker_backends

from .results import DEFAULT_MAX_CONCURRENT, EndpointSettings, ResultWriter
from .runtime import EndpointRuntime
from .wire import AwsError, validation_error

ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+(-[a-z0-9]+)?\.[a-z0-9]+$")
TOPIC_ARN = re.compile(r"^arn:aws[a-z\-]*:sns:[a-z0-9\-]*:[0-9]{12}:[a-zA-Z0-9_.-]+$")
S3_PATH = re.compile(r"^(https|s3)://([^/]+)/?(.*)$")
INCLUDE_VALUES = {"SUCCESS_NOTIFICATION_TOPIC", "ERROR_NOTIFICATION_TOPIC"}

OPERATIONS = {"CreateEndpointConfig", "DescribeEndpointConfig", "CreateEndpoint", "DescribeEndpoint", "UpdateEndpoint",
              "UpdateEndpointWeightsAndCapacities", "DeleteEndpoint"}


def _constraint(value, field: str, rule: str) -> AwsError:
    return validation_error(f"1 validation error detected: Value '{value}' at '{field}' failed to "
                            f"satisfy constraint: {rule}")


def validate_endpoint_config(params: dict) -> None:
    variants = params.get("ProductionVariants") or []
    if not variants:
        raise _constraint(variants, "productionVariants", "Member must have length greater than or equal to 1")
    for n, variant in enumerate(variants, 1):
        instance_type = variant.get("InstanceType")
        if instance_type is not None and not INSTANCE_TYPE.match(instance_type):
            raise _constraint(instance_type, f"productionVariants.{n}.member.instanceType",
                              "Member must be an ML instance type such as ml.m5.large or ml.g5.xlarge")
        count = variant.get("InitialInstanceCount")
        if count is not None and not 1 <= int(count) <= 1000:
            raise _constraint(count, f"productionVariants.{n}.member.initialInstanceCount",
                              "Member must have value between 1 and 1000")
    config = params.get("AsyncInferenceConfig")
    if config is None:
        return
    if len(variants) != 1 or "ServerlessConfig" in variants[0]:
        raise validation_error("An endpoint config with AsyncInferenceConfig takes exactly one "
                               "production variant with instances (no ServerlessConfig).")
    client = config.get("ClientConfig") or {}
    mci = client.get("MaxConcurrentInvocationsPerInstance")
    if mci is not None and not 1 <= int(mci) <= 1000:
        raise _constraint(mci, "asyncInferenceConfig.clientConfig.maxConcurrentInvocationsPerInstance",
                          "Member must have value between 1 and 1000")
    output = config.get("OutputConfig") or {}
    for key in ("S3OutputPath", "S3FailurePath"):
        if key in output and not S3_PATH.match(output[key] or ""):
            raise _constraint(output[key], f"asyncInferenceConfig.outputConfig.{key[0].lower() + key[1:]}",
                              "Member must satisfy regular expression pattern: ^(https|s3)://([^/]+)/?(.*)$")
    if "S3OutputPath" not in output:
        raise validation_error("AsyncInferenceConfig.OutputConfig.S3OutputPath is required.")
    notification = output.get("NotificationConfig") or {}
    for key in ("SuccessTopic", "ErrorTopic"):
        if notification.get(key) and not TOPIC_ARN.match(notification[key]):
            raise _constraint(notification[key], f"asyncInferenceConfig.outputConfig.notificationConfig.{key}",
                              f"Member must satisfy regular expression pattern: {TOPIC_ARN.pattern}")
    for value in notification.get("IncludeInferenceResponseIn") or []:
        if value not in INCLUDE_VALUES:
            raise _constraint(value, "asyncInferenceConfig.outputConfig.notificationConfig."
                              "includeInferenceResponseIn", f"Member must satisfy enum value set: "
                              f"{sorted(INCLUDE_VALUES)}")


class ControlPlane:
    """The runtimes of all endpoints, keyed by (region, endpoint name)."""

    def __init__(self, *, account_id, store, notifier, writer: ResultWriter, clock, state_dir, request_log=None):
        self.account_id = account_id
        self.store = store
        self.notifier = notifier
        self.writer = writer
        self.request_log = request_log
        self.clock = clock
        self.state_dir = state_dir
        self.runtimes: dict[tuple[str, str], EndpointRuntime] = {}
        self._lock = threading.Lock()

    def backend(self, region: str):
        return sagemaker_backends[self.account_id][region]

    def runtime(self, region: str, name: str) -> EndpointRuntime | None:
        return self.runtimes.get((region, name))

    # entry point from the WSGI front layer ------------------------------------------------------
    def handle(self, op: str, params: dict, region: str, call_moto) -> dict:
        """Answer ``op`` or raise AwsError; ``call_moto()`` forwards the original request to moto."""
        return getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower())(params, region, call_moto)

    def _create_endpoint_config(self, params, region, call_moto):
        validate_endpoint_config(params)
        return call_moto()

    def _describe_endpoint_config(self, params, region, call_moto):
        response = call_moto()
        if not response.get("DataCaptureConfig"):
            response.pop("DataCaptureConfig", None)  # AWS leaves it out; SDKs reject an empty one
        return response

    def _create_endpoint(self, params, region, call_moto):
        name = params.get("EndpointName", "")
        if not ENDPOINT_NAME.match(name):
            raise _constraint(name, "endpointName", f"Member must satisfy regular expression pattern: "
                              f"{ENDPOINT_NAME.pattern}")
        backend = self.backend(region)
        with self._lock:
            if name in backend.endpoints:
                arn = backend.endpoints[name].arn
                raise validation_error(f'Cannot create already existing endpoint "{arn}".')
            response = call_moto()
            settings = self._settings(region, name, params["EndpointConfigName"])
            runtime = EndpointRuntime(settings, store=self.store, writer=self.writer, notifier=self.notifier,
                                      clock=self.clock,
                                      work_dir=self.state_dir / "endpoints" / region / name,
                                      on_status=self._status_writer(region, name), request_log=self.request_log)
            self.runtimes[(region, name)] = runtime
        runtime.start()
        return response

    def _settings(self, region: str, name: str, config_name: str) -> EndpointSettings:
        backend = self.backend(region)
        config = backend.endpoint_configs[config_name]
        variant = config.production_variants[0]
        model = backend._models[variant["ModelName"]]
        container = model.primary_container or (model.containers or [{}])[0]
        async_config = config.async_inference_config or None
        client = (async_config or {}).get("ClientConfig") or {}
        return EndpointSettings(
            region=region, endpoint_name=name, variant_name=variant["VariantName"],
            initial_instances=int(variant.get("InitialInstanceCount", 1)),
            image=container.get("Image"), model_data_url=container.get("ModelDataUrl"),
            model_env=dict(container.get("Environment") or {}),
            async_config=async_config,
            max_concurrent=int(client.get("MaxConcurrentInvocationsPerInstance") or DEFAULT_MAX_CONCURRENT),
        )

    def _status_writer(self, region: str, name: str):
        def write(status, reason):
            endpoint = self.backend(region).endpoints.get(name)
            if endpoint is None:
                return
            endpoint.endpoint_status = status
            endpoint.failure_reason = reason
        return write

    def _endpoint(self, region: str, name: str):
        endpoint = self.backend(region).endpoints.get(name)
        if endpoint is None:
            arn = f"arn:aws:sagemaker:{region}:{self.account_id}:endpoint/{name.lower()}"
            raise validation_error(f"Could not find endpoint \"{arn}\".")
        return endpoint

    def _describe_endpoint(self, params, region, call_moto):
        name = params.get("EndpointName", "")
        endpoint = self._endpoint(region, name)
        response = call_moto()
        runtime = self.runtime(region, name)
        config = self.backend(region).endpoint_configs.get(endpoint.endpoint_config_name)
        response.pop("Tags", None)
        if not response.get("DataCaptureConfig"):
            response.pop("DataCaptureConfig", None)  # AWS leaves it out; SDKs reject an empty one
        response["EndpointStatus"] = endpoint.endpoint_status
        if endpoint.failure_reason:
            response["FailureReason"] = endpoint.failure_reason
        if runtime is not None:
            response["ProductionVariants"] = [{
                "VariantName": runtime.settings.variant_name,
                "CurrentWeight": 1.0, "DesiredWeight": 1.0,
                "CurrentInstanceCount": runtime.current_instances,
                "DesiredInstanceCount": runtime.desired,
            }]
        if config is not None and config.async_inference_config:
            response["AsyncInferenceConfig"] = config.async_inference_config
        return response

    def _update_endpoint(self, params, region, call_moto):
        name = params.get("EndpointName", "")
        endpoint = self._endpoint(region, name)
        config_name = params.get("EndpointConfigName", "")
        if config_name not in self.backend(region).endpoint_configs:
            raise validation_error(f"Could not find endpoint configuration \"{config_name}\".")
        if endpoint.endpoint_status not in ("InService", "Failed"):
            raise validation_error(f"Cannot update in-progress endpoint \"{endpoint.arn}\".")
        runtime = self.runtime(region, name)
        endpoint.endpoint_config_name = config_name
        settings = self._settings(region, name, config_name)
        endpoint.endpoint_status = "Updating"
        threading.Thread(target=runtime.replace_settings, args=(settings,), daemon=True).start()
        return {"EndpointArn": endpoint.arn}

    def _update_endpoint_weights_and_capacities(self, params, region, call_moto):
        name = params.get("EndpointName", "")
        endpoint = self._endpoint(region, name)
        runtime = self.runtime(region, name)
        for desired in params.get("DesiredWeightsAndCapacities") or []:
            if desired.get("VariantName") != runtime.settings.variant_name:
                raise validation_error(f"The variant name(s) \"{desired.get('VariantName')}\" is/are not "
                                       f"present within endpoint configuration "
                                       f"\"{endpoint.endpoint_config_name}\".")
            if "DesiredInstanceCount" in desired:
                count = int(desired["DesiredInstanceCount"])
                if not 0 <= count <= 1000:
                    raise _constraint(count, "desiredInstanceCount", "Member must have value between 0 and 1000")
                if count == 0 and not runtime.settings.async_config:
                    raise validation_error("DesiredInstanceCount 0 is allowed only for asynchronous "
                                           "inference endpoints.")
                runtime.set_desired(count)
        return {"EndpointArn": endpoint.arn}

    def _delete_endpoint(self, params, region, call_moto):
        name = params.get("EndpointName", "")
        self._endpoint(region, name)
        with self._lock:
            runtime = self.runtimes.pop((region, name), None)
        if runtime is not None:
            runtime.stop()
        return call_moto()

    def shutdown(self) -> None:
        """The daemon stops: instances stop, unfinished requests stay logged for the next start."""
        for runtime in list(self.runtimes.values()):
            runtime.stop(forget_requests=False)
