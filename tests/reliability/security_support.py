"""Helpers for the bad-input and security tests: an emulator of their own, and an inventory of every
resource on it, so a test can say "nothing was created" by comparing two inventories."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import boto3
from botocore.config import Config

from mf_sm_async import aws
from mf_sm_async.local import daemon

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "conformance" / "models"
_ENV = ("MF_SM_ASYNC_HOME", "MF_SM_ASYNC_TIME_SCALE", "MF_SM_ASYNC_TARGET", "MF_SM_ASYNC_LEASE_TTL_SECONDS")


@contextmanager
def own_emulator(home: Path, time_scale: str = "600"):
    """``MF_SM_ASYNC_HOME`` set to ``home`` (the package's local target starts its daemon there) for the
    block; the daemon is stopped and the environment restored after it."""
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(MF_SM_ASYNC_HOME=str(home), MF_SM_ASYNC_TIME_SCALE=time_scale)
    os.environ.pop("MF_SM_ASYNC_TARGET", None)
    try:
        yield daemon.start(home / "local")
    finally:
        daemon.stop(home / "local")
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def raw_client(service: str, url: str):
    """A plain boto3 client on the emulator: not the package's, so inventories never go through code under test."""
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(retries={"max_attempts": 2}))


def inventory(url: str) -> dict[str, set]:
    """Every endpoint, endpoint config, model, topic, subscription, queue, alarm, scalable target, bucket
    and object on the emulator at ``url``."""
    sm, sns, sqs, s3 = (raw_client(s, url) for s in ("sagemaker", "sns", "sqs", "s3"))
    found = {
        "endpoints": {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]},
        "endpoint_configs": {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]},
        "models": {m["ModelName"] for m in sm.list_models()["Models"]},
        "topics": {t["TopicArn"] for t in sns.list_topics()["Topics"]},
        "subscriptions": {s["SubscriptionArn"] for s in sns.list_subscriptions()["Subscriptions"]},
        "queues": set(sqs.list_queues().get("QueueUrls", [])),
        "alarms": {a["AlarmName"] for a in raw_client("cloudwatch", url).describe_alarms()["MetricAlarms"]},
        "scalable_targets": {t["ResourceId"] for t in raw_client("application-autoscaling", url)
                             .describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]},
        "buckets": {b["Name"] for b in s3.list_buckets()["Buckets"]},
        "objects": set(),
    }
    for bucket in found["buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found["objects"].update(f"{bucket}/{o['Key']}" for o in page.get("Contents", []))
    return found


def created(before: dict[str, set], after: dict[str, set], ignore_leases: bool = True) -> dict[str, set]:
    """What ``after`` holds that ``before`` did not (a live holder's lease renewal rewrites its own key,
    which is not a new object, so only new keys count)."""
    new = {kind: after[kind] - before[kind] for kind in after}
    if ignore_leases:
        new["objects"] = {key for key in new["objects"] if "/leases/" not in key}
    return {kind: names for kind, names in new.items() if names}


def local_url() -> str:
    return aws.local_endpoint_url()
