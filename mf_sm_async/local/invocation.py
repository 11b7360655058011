"""An InvokeEndpointAsync request: its headers validated exactly as the reference gives their ranges.

Validation happens here, server side, for every client: boto3 checks some ranges itself, but the aws
CLI, curl or another SDK may not.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from .wire import validation_error

INLINE_BODY_LIMIT = 128_000
# "up to 1 GB": read as 1 GiB, the count mf_sm_async.batch.plan.MAX_PAYLOAD_BYTES enforces client side
MAX_INPUT_BYTES = 1 << 30
DEFAULT_TTL_SECONDS = 21_600
DEFAULT_INVOCATION_TIMEOUT_SECONDS = 900

_H = "HTTP_X_AMZN_SAGEMAKER_"
# Visible US-ASCII per RFC 7230 field-vchar plus space/tab, as the API documents for these headers.
_VISIBLE_ASCII = re.compile(r"^[\x20-\x7e\t]*$")
_INFERENCE_ID = re.compile(r"^[\x20-\x7e]{1,64}$")
_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.+)$")


@dataclass
class AsyncRequest:
    endpoint_name: str
    inference_id: str
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    input_location: str | None
    inline_body: bytes | None
    output_path_extension: str | None
    filename: str | None
    ttl_seconds: int
    invocation_timeout_seconds: int
    received_at: float = 0.0          # Clock.now() when queued
    received_wall: float = 0.0        # time.time() when queued: survives a daemon restart
    received_time: str = ""           # ISO time for notifications
    attempts: int = 0
    saved_as: object = None           # its file in the RequestLog while unfinished
    extra: dict = field(default_factory=dict)


def parse_s3_uri(uri: str, header: str) -> tuple[str, str]:
    match = _S3_URI.match(uri or "")
    if not match:
        raise validation_error(f"1 validation error detected: Value '{uri}' at '{header}' failed to "
                               "satisfy constraint: Member must satisfy regular expression pattern: "
                               "^(https|s3)://([^/]+)/?(.*)$")
    return match.group(1), match.group(2)


def _text(environ: dict, name: str, header: str, limit: int) -> str | None:
    value = environ.get(_H + name)
    if value is None:
        return None
    if len(value) > limit:
        raise validation_error(f"1 validation error detected: Value at '{header}' failed to satisfy "
                               f"constraint: Member must have length less than or equal to {limit}")
    if not _VISIBLE_ASCII.match(value):
        raise validation_error(f"1 validation error detected: Value at '{header}' failed to satisfy "
                               "constraint: Member must consist of visible US-ASCII characters")
    return value


def _int(environ: dict, name: str, header: str, low: int, high: int, default: int) -> int:
    raw = environ.get(_H + name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error(f"1 validation error detected: Value '{raw}' at '{header}' failed to "
                               "satisfy constraint: Member must be an integer") from None
    if not low <= value <= high:
        bound = (f"greater than or equal to {low}" if value < low else f"less than or equal to {high}")
        raise validation_error(f"1 validation error detected: Value '{value}' at '{header}' failed to "
                               f"satisfy constraint: Member must have value {bound}")
    return value


def parse_request(endpoint_name: str, environ: dict, body: bytes) -> AsyncRequest:
    """Build an :class:`AsyncRequest` from a WSGI environ and body, or raise a ValidationError."""
    content_type = _text(environ, "CONTENT_TYPE", "contentType", 1024)
    accept = _text(environ, "ACCEPT", "accept", 1024)
    custom_attributes = _text(environ, "CUSTOM_ATTRIBUTES", "customAttributes", 1024)
    input_location = _text(environ, "INPUTLOCATION", "inputLocation", 1024)
    extension = _text(environ, "S3OUTPUTPATHEXTENSION", "s3OutputPathExtension", 512)
    filename = _text(environ, "FILENAME", "filename", 32)
    inference_id = environ.get(_H + "INFERENCE_ID")
    if inference_id is not None and not _INFERENCE_ID.match(inference_id):
        raise validation_error("1 validation error detected: Value at 'inferenceId' failed to satisfy "
                               "constraint: Member must have length between 1 and 64 and consist of "
                               "visible US-ASCII characters")
    ttl = _int(environ, "REQUESTTTLSECONDS", "requestTTLSeconds", 60, 21_600, DEFAULT_TTL_SECONDS)
    timeout = _int(environ, "INVOCATIONTIMEOUTSECONDS", "invocationTimeoutSeconds", 1, 3_600,
                   DEFAULT_INVOCATION_TIMEOUT_SECONDS)

    if input_location is not None and body:
        raise validation_error("Body and InputLocation are mutually exclusive. Provide exactly one of them.")
    if input_location is None and not body:
        raise validation_error("Either InputLocation or Body must be provided.")
    if len(body) > INLINE_BODY_LIMIT:
        raise validation_error(f"1 validation error detected: Value at 'body' failed to satisfy "
                               f"constraint: Member must have length less than or equal to "
                               f"{INLINE_BODY_LIMIT} (got {len(body)} bytes); upload larger payloads to "
                               "S3 and pass InputLocation")
    if input_location is not None:
        parse_s3_uri(input_location, "inputLocation")
    if extension is not None and (extension.startswith("/") or ".." in extension.split("/")):
        raise validation_error(f"Value '{extension}' at 's3OutputPathExtension' must be a relative path")
    if filename is not None and ("/" in filename or not filename.strip()):
        raise validation_error(f"Value '{filename}' at 'filename' must be a plain file name")

    return AsyncRequest(
        endpoint_name=endpoint_name,
        inference_id=inference_id or str(uuid.uuid4()),
        content_type=content_type,
        accept=accept,
        custom_attributes=custom_attributes,
        input_location=input_location,
        inline_body=body or None,
        output_path_extension=extension,
        filename=filename,
        ttl_seconds=ttl,
        invocation_timeout_seconds=timeout,
    )
