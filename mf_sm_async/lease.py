"""Leases: who is using an endpoint right now, so one holder's teardown never scales down or deletes an
endpoint that another live holder still uses.

Each holder writes ``<endpoint prefix>/leases/<holder>.json`` with an expiry and renews it from a
background thread every third of its time to live. A holder that dies stops renewing; once its lease
has expired it counts as released, so a crashed run can never pin an endpoint (and its bill) forever.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 120.0
TTL_ENV = "MF_SM_ASYNC_LEASE_TTL_SECONDS"  # tests shorten it; a holder renews every third of it
LEASE_FOLDER = "leases"  # <endpoint prefix>/leases/<holder>.json; the emulator reads it too


class Lease:
    def __init__(self, s3, bucket: str, prefix: str, *, ttl_seconds: float | None = None, clock=time.time):
        self._s3 = s3
        self.bucket = bucket
        self.folder = f"{prefix}/{LEASE_FOLDER}/"
        self.ttl_seconds = ttl_seconds or float(os.environ.get(TTL_ENV) or DEFAULT_TTL_SECONDS)
        self._clock = clock
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        return self.folder + self.holder + ".json"

    def _write(self) -> None:
        body = {"holder": self.holder, "pid": os.getpid(), "host": socket.gethostname(),
                "expires_at": self._clock() + self.ttl_seconds}
        self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=json.dumps(body).encode(),
                            ContentType="application/json")

    def acquire(self) -> "Lease":
        self._write()
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"lease-{self.holder}")
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_seconds / 3):
            try:
                self._write()
            except Exception as exc:  # a missed renewal is retried; the lease only lapses after its TTL
                if not self._stop.is_set():  # else released or abandoned meanwhile: nothing to say
                    log.warning("could not renew lease %s: %s", self.key, exc)

    def release(self) -> None:
        self._stop.set()
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            log.warning("could not release lease %s: %s", self.key, exc)

    def abandon(self) -> None:
        """Stop renewing without deleting (the target cannot be reached): the lease expires by itself."""
        self._stop.set()

    def other_live_holders(self) -> list[str]:
        """Holders other than this one whose lease has not expired."""
        live, now = [], self._clock()
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.folder)
        for obj in (o for page in pages for o in page.get("Contents", [])):
            if obj["Key"] == self.key:
                continue
            try:
                record = json.loads(self._s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read())
            except (ClientError, ValueError):
                continue  # released (deleted) while we listed, or unreadable: not a live holder
            if record.get("expires_at", 0) > now:
                live.append(record.get("holder", obj["Key"]))
        return live
