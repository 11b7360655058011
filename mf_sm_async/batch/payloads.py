"""The two kinds of payload a run sends: slices of a DataFrame encoded by a codec (many rows per
invocation), or one column's values as they are (one row per invocation: images, audio, documents,
given as bytes, local file paths or s3:// URIs).

Staging puts a payload where an invocation can reach it: inline in the request when it is at most
128,000 bytes, else in S3 (a local file is streamed up in multipart parts, never read whole; an s3:// URI
is invoked in place, not copied).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from boto3.s3.transfer import TransferConfig

from ..errors import ConfigError
from . import codecs
from .plan import Part, plan_parts, split_part
from .run import RunPaths

INLINE_LIMIT = 128_000
_TRANSFER = TransferConfig(multipart_threshold=64 * 2**20, multipart_chunksize=64 * 2**20, max_concurrency=4)


@dataclass
class Staged:
    part: Part
    body: bytes | None            # inline
    input_location: str | None    # or in S3
    size: int
    retries: int = 0


class FramePayloads:
    """Rows of the frame, ``rows_per_payload`` (or a byte budget) to a payload, in one content type."""

    splittable = True
    fetch_limit = None  # every part's rows are needed in the result

    def __init__(self, frame: pd.DataFrame, spec):
        self.frame = frame
        self.content_type = codecs.check_content_type(spec.content_type)
        self.accept = codecs.check_content_type(spec.accept, "accept") if spec.accept else self.content_type
        self.extension = codecs.payload_extension(self.content_type)
        self.parts = plan_parts(frame, rows_per_payload=spec.rows_per_payload,
                                max_payload_bytes=spec.max_payload_bytes, content_type=self.content_type)

    def stage(self, s3, paths: RunPaths, part: Part) -> Staged:
        body = codecs.encode_rows(self.frame.iloc[part.start:part.stop], self.content_type)
        if len(body) <= INLINE_LIMIT:
            return Staged(part, body, None, len(body))
        key = paths.input_key(part.key, self.extension)
        _put(s3, paths.bucket, key, body)
        return Staged(part, None, f"s3://{paths.bucket}/{key}", len(body))

    def decode(self, body: bytes, content_type: str | None, part: Part, location: str | None = None) -> pd.DataFrame:
        return codecs.decode_output(body, content_type or self.accept, part.rows)

    def split(self, part: Part) -> list[Part]:
        return split_part(part)


class ColumnPayloads:
    """One invocation per row, the payload being the row's value in ``column``."""

    splittable = False
    fetch_limit = 16 * 2**20  # a bigger output stays in S3: the prediction is its URI

    def __init__(self, frame: pd.DataFrame, spec):
        column = spec.payload_column
        if column not in frame.columns:
            raise ConfigError("payload_column", column, "a column of the DataFrame: " + ", ".join(map(str, frame.columns)))
        self.values = frame[column].tolist()
        self.content_type = spec.content_type
        self.accept = spec.accept
        width = max(5, len(str(len(self.values))))
        self.parts = [Part(n, n, n + 1, f"{n:0{width}d}") for n in range(len(self.values))]
        for n, value in enumerate(self.values):
            _check_value(column, frame.index[n], value)

    def stage(self, s3, paths: RunPaths, part: Part) -> Staged:
        value = self.values[part.start]
        if isinstance(value, (bytes, bytearray, memoryview)):
            body = bytes(value)
            if len(body) <= INLINE_LIMIT:
                return Staged(part, body, None, len(body))
            key = paths.input_key(part.key, "")
            _put(s3, paths.bucket, key, body)
            return Staged(part, None, f"s3://{paths.bucket}/{key}", len(body))
        text = str(value)
        if text.startswith("s3://"):
            return Staged(part, None, text, 0)
        size = os.path.getsize(text)
        if size <= INLINE_LIMIT and size > 0:
            return Staged(part, Path(text).read_bytes(), None, size)
        key = paths.input_key(part.key, "")
        s3.upload_file(text, paths.bucket, key, Config=_TRANSFER)
        return Staged(part, None, f"s3://{paths.bucket}/{key}", size)

    def decode(self, body: bytes | None, content_type: str | None, part: Part, location: str | None = None):
        """The row's prediction: the decoded output, or its ``location`` when it was too big to fetch
        (``body`` None)."""
        value = location if body is None else codecs.decode_single(body, content_type or "application/octet-stream")
        return pd.DataFrame({"prediction": [value]})

    def split(self, part: Part) -> list[Part]:
        return [part]


def _put(s3, bucket: str, key: str, body: bytes) -> None:
    """One PutObject below the multipart threshold (a transfer manager per call costs more than it saves)."""
    if len(body) < _TRANSFER.multipart_threshold:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    else:
        s3.upload_fileobj(io.BytesIO(body), bucket, key, Config=_TRANSFER)


def _check_value(column, label, value) -> None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        if text.startswith("s3://") or os.path.isfile(text):
            return
        raise ConfigError(f"{column}[{label!r}]", text, "bytes, an existing local file path or an s3:// URI")
    raise ConfigError(f"{column}[{label!r}]", value, "bytes, a local file path or an s3:// URI")


def payloads_for(frame: pd.DataFrame, spec):
    return ColumnPayloads(frame, spec) if spec.payload_column else FramePayloads(frame, spec)
