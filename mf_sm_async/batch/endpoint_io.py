"""What the fan-out engine needs to know about an endpoint, read once from its AsyncInferenceConfig."""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass

from ..errors import InvocationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndpointIO:
    name: str
    target: str
    bucket: str                 # where the run's inputs, journal and manifest go
    prefix: str
    output_path: str            # S3OutputPath
    failure_path: str | None    # S3FailurePath
    topics: tuple[str, ...]     # the success and error topics, if the endpoint notifies
    region: str = "us-east-1"
    url: str | None = None      # the local emulator's URL (None on AWS)

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
                   output["S3OutputPath"], output.get("S3FailurePath"), topics, sagemaker.meta.region_name,
                   sagemaker.meta.endpoint_url if endpoint.target == "local" else None)

    def received(self, inference_ids: list[str]) -> set[str] | None:
        """Which of ``inference_ids`` the endpoint has received since it (re)started, if the target can
        tell: the emulator can (its counts API; a request restored after a restart counts again), AWS
        cannot (None)."""
        if self.url is None:
            return None
        try:
            with urllib.request.urlopen(f"{self.url}/_mf_sm_async/counts", timeout=30) as response:
                counts = json.load(response).get(f"{self.region}/{self.name}", {})
        except (OSError, ValueError) as error:
            log.info("the emulator could not say which requests it received (%s)", error)
            return None
        seen = counts.get("received_per_inference_id", {})
        return {i for i in inference_ids if i in seen}
