"""Split an input frame into payloads ("parts"): positional row ranges sized by rows or by a byte budget.

Parts are positions, not index labels, so any index works: strings, duplicates, a MultiIndex.

Example::

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"x": range(5)}, index=list("aabbc"))
    >>> [(part.key, part.start, part.stop) for part in plan_parts(frame, rows_per_payload=2)]
    [('00000', 0, 2), ('00001', 2, 4), ('00002', 4, 5)]
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .codecs import CSV, JSON, JSONLINES, NPY, PARQUET, check_content_type, encode_rows

DEFAULT_ROWS_PER_PAYLOAD = 500
MAX_ROWS_PER_PAYLOAD = 1_000_000
MAX_PAYLOAD_BYTES = 1 << 30  # 1 GiB, SageMaker Asynchronous Inference's largest input
SAMPLE_ROWS = 200  # rows encoded to estimate a byte budget: enough to see the spread, quick to encode
# Parquet compresses: a sample's bytes per row only approximates a part's, so leave room.
_PARQUET_MARGIN = 1.25


@dataclass(frozen=True)
class Part:
    """Rows ``start:stop`` (positions) of the input frame, sent as one payload.

    ``key`` is the part's identity, unique within a plan and stable across runs: ``"00003"`` for the
    top-level part number 3, ``"00003.1"`` for the second half of it after ``split_part``. ``number`` is the
    number of the top-level part, which its halves share.

    >>> Part(3, 1500, 2000)
    Part(number=3, start=1500, stop=2000, key='00003')
    """

    number: int
    start: int
    stop: int
    key: str = ""

    def __post_init__(self):
        if not self.key:
            object.__setattr__(self, "key", f"{self.number:05d}")

    @property
    def rows(self) -> int:
        """How many rows the part holds.

        >>> Part(0, 10, 25).rows
        15
        """
        return self.stop - self.start


def plan_parts(frame: pd.DataFrame, *, rows_per_payload: int | None = None, max_payload_bytes: int | None = None,
               content_type: str = JSONLINES) -> list[Part]:
    """Consecutive parts covering every row of ``frame``, numbered from 0.

    Give at most one of ``rows_per_payload`` (default 500) and ``max_payload_bytes``. With a byte budget,
    up to ``SAMPLE_ROWS`` rows spread over the frame are encoded as ``content_type`` to estimate the bytes
    per row, and parts hold as many rows as fit (at least one, even when a single row is larger).

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"x": [0.5] * 10})
    >>> [part.rows for part in plan_parts(frame, max_payload_bytes=20)]
    [3, 3, 3, 1]
    """
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError("frame", type(frame).__name__, "a pandas DataFrame")
    media = check_content_type(content_type)
    if max_payload_bytes is None:
        size = _integer("rows_per_payload", DEFAULT_ROWS_PER_PAYLOAD if rows_per_payload is None else rows_per_payload,
                        MAX_ROWS_PER_PAYLOAD)
    elif rows_per_payload is not None:
        raise ConfigError("max_payload_bytes", max_payload_bytes, "None when rows_per_payload is given",
                          hint="size payloads by rows_per_payload or by max_payload_bytes, not both")
    else:
        budget = _integer("max_payload_bytes", max_payload_bytes, MAX_PAYLOAD_BYTES, "1073741824 (1 GiB)")
        size = _rows_within(frame, budget, media) if len(frame) else 1
    return [Part(number, start, min(start + size, len(frame)))
            for number, start in enumerate(range(0, len(frame), size))]


def split_part(part: Part) -> list[Part]:
    """The two halves of a part, to isolate a row the model fails on; a one-row part stays whole.

    >>> split_part(Part(3, 0, 5))
    [Part(number=3, start=0, stop=2, key='00003.0'), Part(number=3, start=2, stop=5, key='00003.1')]
    """
    if part.rows <= 1:
        return [part]
    middle = part.start + part.rows // 2
    return [Part(part.number, part.start, middle, f"{part.key}.0"),
            Part(part.number, middle, part.stop, f"{part.key}.1")]


def _integer(field: str, value: object, high: int, high_text: str | None = None) -> int:
    # Integral admits numpy integers; bool is an int subclass, but rows_per_payload=True is a mistake.
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not 1 <= value <= high:
        raise ConfigError(field, value, f"an integer from 1 to {high_text or high}")
    return int(value)


def _rows_within(frame: pd.DataFrame, budget: int, media: str) -> int:
    """How many rows fit in ``budget`` bytes, estimated from a sample spread over the frame."""
    positions = np.unique(np.linspace(0, len(frame) - 1, min(len(frame), SAMPLE_ROWS)).round().astype(np.int64))
    sample = frame.iloc[positions]
    if media in (JSONLINES, JSON, CSV):
        # Text rows differ in length (digits, strings): plan for the longest row seen, so that parts of
        # typical rows stay under the budget. A JSON row has the same text plus a comma instead of a newline.
        lines = encode_rows(sample, CSV if media == CSV else JSONLINES).split(b"\n")[:-1]
        per_row = max(len(line) + 1 for line in lines)
        overhead = 1 if media == JSON else 0  # "[" and "]" around the rows, minus the last row's comma
    else:
        one = len(encode_rows(sample.iloc[:1], media))
        per_row = (len(encode_rows(sample, media)) - one) / (len(sample) - 1) if len(sample) > 1 else one
        if media == PARQUET:
            per_row *= _PARQUET_MARGIN
        overhead = one - per_row + (64 if media == NPY else 0)  # npy's header grows with the shape's digits
    return int(min(max(1, math.floor((budget - overhead) / max(per_row, 1))), MAX_ROWS_PER_PAYLOAD))
