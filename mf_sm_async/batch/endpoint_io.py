"""What the fan-out engine needs to know about an endpoint, read once from its AsyncInferenceConfig."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvocationError


@dataclass(frozen=True)
class EndpointIO:
    name: str
    target: str
    bucket: str                 # where the run's inputs, journal and manifest go
    prefix: str
    output_path: str            # S3OutputPath
    failure_path: str | None    # S3FailurePath
    topics: tuple[str, ...]     # the success and error topics, if the endpoint notifies

    @classmethod
    def of(cls, endpoint) -> "EndpointIO":
        sagemaker = endpoint._client("sagemaker")
        described = sagemaker.describe_endpoint(EndpointName=endpoint.name)
        config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
        output = (config.get("AsyncInferenceConfig") or {}).get("OutputConfig")
        if not output:
            raise InvocationError(f"endpoint {endpoint.name} is not an asynchronous endpoint")
        notes = output.get("NotificationConfig") or {}
        topics = tuple(t for t in (notes.get("SuccessTopic"), notes.get("ErrorTopic")) if t)
        return cls(endpoint.name, endpoint.target, endpoint.resources.bucket, endpoint.resources.prefix,
                   output["S3OutputPath"], output.get("S3FailurePath"), topics)
