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
from .plan import MAX_PAYLOAD_BYTES, Part, plan_parts, split_part
from .run import RunPaths

INLINE_LIMIT = 128_000
_TRANSFER = TransferConfig(multipart_threshold=64 * 2**20, multipart_chunksize=64 * 2**20, max_concurrency=4)


@dataclass
class Staged:
    part: Part | None             # None for a lone invoke_async
    body: bytes | None            # inline
    input_location: str | None    # or in S3
    size: int

    def request_fields(self) -> dict:
        """The InvokeEndpointAsync parameter that carries it."""
        return {"Body": self.body} if self.body is not None else {"InputLocation": self.input_location}


def stage_value(s3, bucket: str, key: str, value, part: Part | None = None) -> Staged:
    """Put one payload where an invocation can reach it: bytes inline if small enough, else at
    ``s3://bucket/key``; an ``s3://`` URI where it is; a local file inline if small, else streamed up."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        body = bytes(value)
        _check_size(f"payload {key.rsplit('/', 1)[-1]}", len(body))
        if len(body) <= INLINE_LIMIT:
            return Staged(part, body, None, len(body))
        _put(s3, bucket, key, body)
        return Staged(part, None, f"s3://{bucket}/{key}", len(body))
    text = str(value)
    if text.startswith("s3://"):
        return Staged(part, None, text, 0)
    size = os.path.getsize(text)
    _check_size(text, size)
    if 0 < size <= INLINE_LIMIT:
        return Staged(part, Path(text).read_bytes(), None, size)
    s3.upload_file(text, bucket, key, Config=_TRANSFER)
    return Staged(part, None, f"s3://{bucket}/{key}", size)


class FramePayloads:
    """Rows of the frame, ``rows_per_payload`` (or a byte budget) to a payload, in one content type."""

    splittable = True
    fetch_limit = None  # every part's rows are needed in the result

    def __init__(self, frame: pd.DataFrame, spec):
        self.frame = frame
        self.content_type = codecs.check_content_type(spec.content_type)
        self.accept = codecs.check_content_type(spec.accept, "accept") if spec.accept else self.content_type
        self.extension = codecs.payload_extension(self.content_type)
        codecs.check_frame(frame, self.content_type)  # a column no payload can carry fails before any upload
        self.parts = plan_parts(frame, rows_per_payload=spec.rows_per_payload,
                                max_payload_bytes=spec.max_payload_bytes, content_type=self.content_type)

    def stage(self, s3, paths: RunPaths, part: Part) -> Staged:
        body = codecs.encode_rows(self.frame.iloc[part.start:part.stop], self.content_type)
        return stage_value(s3, paths.bucket, paths.input_key(part.key, self.extension), body, part)

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
            check_value(f"{column}[{frame.index[n]!r}]", value)

    def stage(self, s3, paths: RunPaths, part: Part) -> Staged:
        return stage_value(s3, paths.bucket, paths.input_key(part.key, ""), self.values[part.start], part)

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


def _check_size(field: str, size: int) -> None:
    """SageMaker takes payloads of up to 1 GB; we read that as 1 GiB (``MAX_PAYLOAD_BYTES``, the same count
    the emulator enforces) and refuse a bigger one before any byte is uploaded."""
    if size > MAX_PAYLOAD_BYTES:
        raise ConfigError(field, f"{size:,} bytes", f"at most {MAX_PAYLOAD_BYTES:,} bytes (1 GiB), the largest payload "
                          "SageMaker Asynchronous Inference accepts",
                          hint="split the input into smaller payloads")


def check_value(field: str, value) -> None:
    """What :func:`stage_value` takes, or a ConfigError naming ``field`` (also for a payload over 1 GiB)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        _check_size(field, memoryview(value).nbytes)
        return
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        if text.startswith("s3://"):
            return
        if os.path.isfile(text):
            _check_size(f"{field} {text}", os.path.getsize(text))
            return
        raise ConfigError(field, text[:200], "bytes, an existing local file path or an s3:// URI")
    raise ConfigError(field, value, "bytes, a local file path or an s3:// URI")


def payloads_for(frame: pd.DataFrame, spec):
    return ColumnPayloads(frame, spec) if spec.payload_column else FramePayloads(frame, spec)
