"""One raw asynchronous invocation and a handle on its result: ``ep.invoke_async(payload)``.

The payload is bytes (inline when at most 128,000 bytes, else uploaded), a local file path (streamed up
in multipart parts: a 1 GiB file is never held in memory) or an s3:// URI (invoked in place).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from ..config import InvokeSpec
from ..errors import ModelError, TimeoutError
from .payloads import _TRANSFER, check_value, stage_value
from .run import split_s3


@dataclass
class Invocation:
    """A sent request. ``result(timeout)`` waits for its output (polling the two objects it can produce,
    backing off to once a second) and never waits past ``timeout``."""

    inference_id: str
    output_location: str
    failure_location: str | None
    s3: object = field(repr=False)
    sleep: object = field(default=time.sleep, repr=False)

    def _exists(self, uri: str | None) -> bool:
        if not uri:
            return False
        bucket, key = split_s3(uri)
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def wait(self, timeout: float) -> bool:
        """True once the output exists; ModelError if the request failed; TimeoutError after ``timeout``."""
        deadline, delay = time.monotonic() + timeout, 0.05
        while True:
            if self._exists(self.output_location):
                return True
            if self._exists(self.failure_location):
                bucket, key = split_s3(self.failure_location)
                text = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read(4096).decode("utf-8", "replace")
                raise ModelError(f"inference {self.inference_id} failed: {text}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"inference {self.inference_id} has no result after {timeout:g}s",
                                   f"it may still finish: its output will appear at {self.output_location}")
            self.sleep(min(delay, left))
            delay = min(delay * 2, 1.0)

    def result(self, timeout: float = 900.0) -> bytes:
        """The output's bytes."""
        self.wait(timeout)
        bucket, key = split_s3(self.output_location)
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def download(self, path: str, timeout: float = 900.0) -> str:
        """Stream the output to a local file (for outputs too big to hold in memory)."""
        self.wait(timeout)
        bucket, key = split_s3(self.output_location)
        self.s3.download_file(bucket, key, path, Config=_TRANSFER)
        return path


def invoke_async(endpoint, io, payload, *, content_type: str | None = None, accept: str | None = None,
                 custom_attributes: str | None = None, inference_id: str | None = None,
                 request_ttl_seconds: int = 3600, invocation_timeout_seconds: int = 900) -> Invocation:
    # every option checked before the payload is uploaded: a refused request leaves no orphan input in S3
    InvokeSpec(content_type, accept, custom_attributes, inference_id, request_ttl_seconds, invocation_timeout_seconds)
    s3 = endpoint._client("s3")
    inference_id = inference_id or uuid.uuid4().hex
    request = {"EndpointName": endpoint.name, "InferenceId": inference_id, "RequestTTLSeconds": request_ttl_seconds,
               "InvocationTimeoutSeconds": invocation_timeout_seconds}
    for name, value in (("ContentType", content_type), ("Accept", accept), ("CustomAttributes", custom_attributes)):
        if value:
            request[name] = value
    check_value("payload", payload)
    request.update(stage_value(s3, io.bucket, f"{io.prefix}/invocations/{inference_id}/input", payload)
                   .request_fields())
    answer = endpoint._client("sagemaker-runtime").invoke_endpoint_async(**request)
    return Invocation(inference_id, answer["OutputLocation"], answer.get("FailureLocation"), s3)
