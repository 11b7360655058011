"""The emulator's own reads and writes of S3 objects, in process (no HTTP, no SigV4).

One place, so the disk-backed streaming store of a later issue replaces only this module.
"""

from __future__ import annotations

from moto.s3.models import s3_backends


class ObjectNotFound(Exception):
    pass


class ObjectStore:
    def __init__(self, account_id: str):
        self._backend = s3_backends[account_id]["aws"]

    def get(self, bucket: str, key: str) -> tuple[bytes, str | None]:
        """The object's bytes and its Content-Type."""
        try:
            obj = self._backend.get_object(bucket, key)
        except Exception as exc:  # moto raises MissingBucket / MissingKey
            raise ObjectNotFound(f"s3://{bucket}/{key}: {type(exc).__name__}") from None
        if obj is None:
            raise ObjectNotFound(f"s3://{bucket}/{key}: NoSuchKey")
        return obj.value, obj.metadata.get("Content-Type")

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        obj = self._backend.put_object(bucket, key, data)
        if content_type:
            obj.set_metadata({"Content-Type": content_type})
