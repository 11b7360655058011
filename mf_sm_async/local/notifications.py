"""SNS notifications in the JSON SageMaker Asynchronous Inference publishes (see the API reference)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging

from moto.sns.models import sns_backends

log = logging.getLogger(__name__)

RESPONSE_BODY_LIMIT = 128 * 1024


def iso_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def inference_message(*, region: str, endpoint_name: str, inference_id: str, received_time: str,
                      content_type: str | None, input_location: str | None,
                      output_content_type: str | None, location_key: str, location: str,
                      failure_reason: str | None = None, response_body: bytes | None = None) -> dict:
    """The notification body; ``location_key`` is ``outputLocation`` or ``failureLocation``."""
    request = {"contentType": content_type or "application/octet-stream", "endpointName": endpoint_name}
    if input_location:
        request["inputLocation"] = input_location
    message = {
        "awsRegion": region,
        "eventTime": iso_now(),
        "receivedTime": received_time,
        "invocationStatus": "Failed" if failure_reason else "Completed",
        "requestParameters": request,
        "responseParameters": {"contentType": output_content_type or "application/octet-stream",
                               location_key: location},
        "inferenceId": inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if failure_reason:
        message["failureReason"] = failure_reason
    if response_body is not None and len(response_body) <= RESPONSE_BODY_LIMIT:
        message["responseBody"] = {"content": base64.b64encode(response_body).decode(),
                                   "message": "", "encoding": "BASE64"}
    return message


def test_message(region: str, endpoint_name: str) -> dict:
    return {"eventName": "TestNotification", "eventSource": "aws:sagemaker", "eventVersion": "1.0",
            "awsRegion": region, "eventTime": iso_now(), "requestParameters": {"endpointName": endpoint_name}}


class Notifier:
    """Publishes to SNS topics in process; a missing topic is logged, as AWS drops it silently."""

    def __init__(self, account_id: str):
        self._account_id = account_id
        self.muted = False  # while the journal replays: those notifications were sent before

    def publish(self, topic_arn: str | None, message: dict) -> bool:
        if not topic_arn or self.muted:
            return False
        region = topic_arn.split(":")[3]
        try:
            sns_backends[self._account_id][region].publish(json.dumps(message), arn=topic_arn)
            return True
        except Exception as exc:  # the topic was deleted or never existed
            log.warning("notification to %s not delivered: %s", topic_arn, exc)
            return False
