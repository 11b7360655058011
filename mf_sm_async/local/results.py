"""Where an asynchronous request's outcome goes: the output or failure object in S3 and the SNS
notification, exactly where the InvokeEndpointAsync answer said it would be."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .invocation import AsyncRequest, parse_s3_uri
from .notifications import Notifier, inference_message
from .objects import ObjectStore

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT = 4  # AWS picks a default when ClientConfig is absent; we document 4


@dataclass
class EndpointSettings:
    """What an endpoint config says, reduced to what the runtime needs."""
    region: str
    endpoint_name: str
    variant_name: str
    initial_instances: int
    model_data_url: str | None
    model_env: dict
    async_config: dict | None
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    image: str | None = None  # PrimaryContainer.Image: which container serves it (see containers.py)

    @property
    def output_path(self) -> str:
        return self.async_config["OutputConfig"]["S3OutputPath"]

    @property
    def failure_path(self) -> str:
        out = self.async_config["OutputConfig"]
        return out.get("S3FailurePath") or out["S3OutputPath"]

    @property
    def kms_key_id(self) -> str | None:
        """OutputConfig.KmsKeyId: outputs and failures are written encrypted with it."""
        return ((self.async_config or {}).get("OutputConfig") or {}).get("KmsKeyId") or None

    @property
    def notification(self) -> dict:
        if not self.async_config:
            return {}
        return self.async_config["OutputConfig"].get("NotificationConfig") or {}


def join_s3(base: str, *parts: str | None) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])


def output_location(settings: EndpointSettings, request: AsyncRequest) -> str:
    return join_s3(settings.output_path, request.output_path_extension,
                   request.filename or f"{request.inference_id}.out")


def failure_location(settings: EndpointSettings, request: AsyncRequest) -> str:
    return join_s3(settings.failure_path, request.output_path_extension, f"{request.inference_id}-error.out")


class ResultWriter:
    """Writes outcomes to S3 and publishes the notifications; ``drop_notification`` is a fault hook."""

    def __init__(self, store: ObjectStore, notifier: Notifier, drop_notification=lambda endpoint: False):
        self.store = store
        self.notifier = notifier
        self._drop = drop_notification

    def succeed(self, settings: EndpointSettings, request: AsyncRequest, body: bytes,
                content_type: str | None) -> bool:
        """Write the output; False (and nothing written) when S3 refused it, so the caller fails it."""
        location = output_location(settings, request)
        bucket, key = parse_s3_uri(location, "outputLocation")
        try:
            self.store.put(bucket, key, body, content_type, kms_key_id=settings.kms_key_id)
        except Exception as exc:
            log.warning("could not write the output of %s to %s: %s", request.inference_id, location, exc)
            return False
        self._notify(settings, request, "SuccessTopic", "SUCCESS_NOTIFICATION_TOPIC", content_type,
                     "outputLocation", location, None, body)
        return True

    def fail(self, settings: EndpointSettings, request: AsyncRequest, body: bytes, reason: str,
             content_type: str | None = None) -> None:
        location = failure_location(settings, request)
        bucket, key = parse_s3_uri(location, "failureLocation")
        try:
            self.store.put(bucket, key, body, content_type or "text/plain; charset=utf-8",
                           kms_key_id=settings.kms_key_id)
        except Exception as exc:
            log.error("could not write the failure of %s to %s: %s", request.inference_id, location, exc)
        self._notify(settings, request, "ErrorTopic", "ERROR_NOTIFICATION_TOPIC", content_type,
                     "failureLocation", location, reason, body)

    def _notify(self, settings, request, topic_key, include_key, content_type, location_key, location,
                reason, body) -> None:
        note = settings.notification
        topic = note.get(topic_key)
        if not topic or self._drop(settings.endpoint_name):
            return
        include = include_key in (note.get("IncludeInferenceResponseIn") or [])
        self.notifier.publish(topic, inference_message(
            region=settings.region, endpoint_name=settings.endpoint_name, inference_id=request.inference_id,
            received_time=request.received_time, content_type=request.content_type,
            input_location=request.input_location, output_content_type=content_type,
            location_key=location_key, location=location, failure_reason=reason,
            response_body=body if include else None))
