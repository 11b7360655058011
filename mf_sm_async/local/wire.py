"""AWS wire-format errors and responses shared by the emulator's own routes."""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass

_SCOPE = re.compile(r"/(\d{8})/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


@dataclass(frozen=True)
class CredentialScope:
    """The date / region / service a SigV4 request was signed for: what moto routes by, no secret."""
    date: str
    region: str
    service: str

    def __str__(self) -> str:
        return f"{self.date}/{self.region}/{self.service}"


def credential_scope(environ: dict) -> CredentialScope | None:
    """From the Authorization header, or a presigned URL's X-Amz-Credential."""
    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match is None and "X-Amz-Credential" in environ.get("QUERY_STRING", ""):
        match = _SCOPE.search(urllib.parse.unquote(environ["QUERY_STRING"]))
    return CredentialScope(*match.groups()) if match else None


class AwsError(Exception):
    """An error answered the way AWS answers it: HTTP status, error code, message."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def validation_error(message: str) -> AwsError:
    return AwsError("ValidationError", message, 400)


_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found",
            424: "Failed Dependency", 500: "Internal Server Error", 503: "Service Unavailable"}


def status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Status')}"


def json_response(start_response, status: int, body: dict, headers: list | None = None):
    data = json.dumps(body, default=str).encode()
    start_response(status_line(status), [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("Content-Length", str(len(data))),
        *(headers or []),
    ])
    return [data]


def error_response(start_response, error: AwsError, protocol: str = "rest-json"):
    """Render ``error`` as boto3 parses it for rest-json (sagemaker-runtime) and json-1.1 (sagemaker)."""
    code = error.code
    if protocol == "json" and code == "ValidationError":
        code = "ValidationException"  # the control plane (json-1.1) names it so; the runtime does not
    body = {"__type": code, "message": error.message, "Message": error.message}
    headers = [("x-amzn-ErrorType", code)] if protocol == "rest-json" else []
    return json_response(start_response, error.status, body, headers)
