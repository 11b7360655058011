"""Which target answers (the local emulator or real AWS) and the boto3 clients that talk to it.

This is the only module that knows the difference between the two targets::

    from mf_sm_async import aws
    sm = aws.client("sagemaker")              # local emulator unless MF_SM_ASYNC_TARGET=aws
    runtime = aws.client("sagemaker-runtime", target="aws")
"""

from __future__ import annotations

import os
import threading

import boto3
from botocore.config import Config

from .config import TARGETS
from .errors import ConfigError

LOCAL_REGION = "us-east-1"
# The emulator accepts any credentials; fixed dummy ones keep a user's real keys out of its logs.
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

_clients: dict[tuple, object] = {}
_lock = threading.Lock()


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


def client(service: str, target: str | None = None, *, max_pool: int = 64):
    """A boto3 client for ``service`` on the resolved target, cached per process (clients are thread-safe)."""
    target = resolve_target(target)
    if target == "local":
        url = local_endpoint_url()
        key = (service, target, url, max_pool)
        kwargs = {"endpoint_url": url, "region_name": LOCAL_REGION, **LOCAL_CREDENTIALS}
    else:
        key = (service, target, None, max_pool)
        kwargs = {}
    with _lock:
        if key not in _clients:
            _clients[key] = boto3.session.Session().client(service, config=_config(max_pool), **kwargs)
        return _clients[key]


def local_env(url: str) -> dict[str, str]:
    """Environment that points the aws CLI, the sagemaker SDK and any boto3 code at the emulator."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
    }
