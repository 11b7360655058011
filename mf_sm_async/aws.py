"""Which target answers (the local emulator or real AWS) and the boto3 clients that talk to it.

This is the only module that knows the difference between the two targets::

    from mf_sm_async import aws
    sm = aws.client("sagemaker")              # local emulator unless MF_SM_ASYNC_TARGET=aws
    runtime = aws.client("sagemaker-runtime", target="aws")
"""

from __future__ import annotations

import logging
import os
import re
import threading

import boto3
from botocore.config import Config

from .config import TARGETS
from .errors import ConfigError

LOCAL_REGION = "us-east-1"
# The emulator accepts any credentials; fixed dummy ones keep a user's real keys out of its logs.
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

_clients: dict[tuple, object] = {}
_hooks: list[tuple[str, object]] = []  # (event, handler) registered on every client, made or to come
_lock = threading.Lock()
# The S3 operations that write an object: each gets SSE-KMS when the endpoint has a key.
_WRITES = ("PutObject", "CreateMultipartUpload", "CopyObject")


def resolve_target(target: str | None = None) -> str:
    """``target`` if given, else ``MF_SM_ASYNC_TARGET``, else ``local``."""
    value = target or os.environ.get("MF_SM_ASYNC_TARGET") or "local"
    if value not in TARGETS:
        field = "target" if target else "MF_SM_ASYNC_TARGET"
        raise ConfigError(field, value, " or ".join(repr(t) for t in TARGETS))
    return value


def local_endpoint_url() -> str:
    """URL of the running emulator, starting the daemon on first use."""
    from .local import daemon

    return daemon.start()["url"]


def lost(target: str, url: str | None) -> str | None:
    """Why the local emulator that clients made for ``url`` can no longer answer (its daemon stopped, or
    another one replaced it), or None. Never starts a daemon; for AWS always None (its errors say why)."""
    if target != "local" or not url:
        return None
    import json
    import socket
    import urllib.parse

    from .local import daemon

    where = urllib.parse.urlsplit(url)
    try:  # anything accepting connections there is the daemon (a busy one still accepts)
        socket.create_connection((where.hostname, where.port), timeout=2).close()
        return None
    except OSError:
        pass
    try:
        state = json.loads((daemon.default_state_dir() / daemon.STATE_FILE).read_text())
    except (OSError, ValueError):
        return f"the local emulator at {url} is not running any more"
    if state.get("url") != url:
        return f"the local emulator at {url} was replaced by another one at {state.get('url')}"
    if not daemon.pid_alive(int(state.get("pid", 0))):
        return f"the local emulator at {url} (pid {state.get('pid')}) is not running any more"
    return None


def _config(max_pool: int) -> Config:
    return Config(retries={"mode": "adaptive", "max_attempts": 10}, max_pool_connections=max_pool,
                  connect_timeout=10, read_timeout=120)


def client(service: str, target: str | None = None, *, max_pool: int = 64, kms_key_id: str | None = None):
    """A boto3 client for ``service`` on the resolved target, cached per process (clients are thread-safe).

    ``kms_key_id`` (S3 only): every object this client writes (PutObject, multipart uploads, copies) is
    encrypted with that KMS key (SSE-KMS), so no call site can forget it."""
    target = resolve_target(target)
    if kms_key_id is not None and service != "s3":
        raise ConfigError("kms_key_id", kms_key_id, "None for a client of a service other than s3")
    if target == "local":
        url = local_endpoint_url()
        key = (service, target, url, max_pool, kms_key_id)
        kwargs = {"endpoint_url": url, "region_name": LOCAL_REGION, **LOCAL_CREDENTIALS}
    else:
        key = (service, target, None, max_pool, kms_key_id)
        kwargs = {}
    with _lock:
        if key not in _clients:
            redact_logs()
            made = boto3.session.Session().client(service, config=_config(max_pool), **kwargs)
            if kms_key_id is not None:
                for operation in _WRITES:
                    made.meta.events.register(f"before-parameter-build.s3.{operation}", _sse_kms(kms_key_id))
            for event, handler in _hooks:
                made.meta.events.register(event, handler)
            _clients[key] = made
        return _clients[key]


def _sse_kms(kms_key_id: str):
    def add(params, **_):
        params.setdefault("ServerSideEncryption", "aws:kms")
        params.setdefault("SSEKMSKeyId", kms_key_id)
    return add


def register_hook(event: str, handler) -> None:
    """Register a botocore event handler (e.g. ``before-call``) on every client this module made and will
    make; tests use it to see every AWS operation the package calls. ``unregister_hook`` removes it."""
    with _lock:
        _hooks.append((event, handler))
        for made in _clients.values():
            made.meta.events.register(event, handler)


def unregister_hook(event: str, handler) -> None:
    with _lock:
        if (event, handler) in _hooks:
            _hooks.remove((event, handler))
        for made in _clients.values():
            made.meta.events.unregister(event, handler)


# --------------------------------------------------------------------------------------- log redaction
# botocore's DEBUG logs print request headers (X-Amz-Security-Token, Authorization), the canonical request
# and presigned URLs' query strings; urllib3 logs URLs. A user who turns on DEBUG logging must not find
# credentials in their logs, so these loggers rewrite such values before any handler sees them.
_SECRET_PATTERNS = [
    (re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=,]\s*b?['\"]?)[^'\"\s,}&]+"), r"\1<redacted>"),
    (re.compile(r"(?i)(x-amz-security-token\n?:?)[A-Za-z0-9/+=%]{16,}"), r"\1<redacted>"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*b?['\"]?)[^'\"\n]+"), r"\1<redacted>"),
    (re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s'\"]+"), r"\1<redacted>"),
    (re.compile(r"(?i)(aws_secret_access_key|aws_session_token|SecretAccessKey|SessionToken)(['\"]?\s*[:=]\s*['\"]?)"
                r"[^'\"\s,}]+"), r"\1\2<redacted>"),
    (re.compile(r"(?m)^(Signature:\n)?[0-9a-f]{64}$"), "<redacted signature>"),
]
_REDACTED_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


def redact(text: str) -> str:
    """``text`` with session tokens, signatures, credentials in URLs and Authorization values replaced.

    >>> redact("GET /b/k?X-Amz-Credential=AKIA%2F20240101&X-Amz-Signature=abc123 HTTP/1.1")
    'GET /b/k?X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted> HTTP/1.1'
    """
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_FILTER = _RedactingFilter()


def redact_logs() -> None:
    """Attach the redacting filter to every logger of boto3, botocore, s3transfer and urllib3 (a logger's
    filters see only its own records, so each one gets it); called whenever a client is made."""
    names = [name for name in list(logging.root.manager.loggerDict) if name.split(".")[0] in _REDACTED_LOGGERS]
    for name in {*names, *_REDACTED_LOGGERS}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def local_env(url: str) -> dict[str, str]:
    """Environment that points the aws CLI, the sagemaker SDK and any boto3 code at the emulator."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
    }
