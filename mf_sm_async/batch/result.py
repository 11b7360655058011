"""What ``predict`` returns: predictions aligned to the input, the failures, and the metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd


@dataclass(frozen=True)
class RunMetrics:
    run_id: str
    rows: int
    rows_failed: int
    payloads: int                 # invocations sent by this call (split retries included)
    payloads_reused: int          # parts a resumed run found already finished or in flight
    bytes_sent: int               # payload bytes uploaded or sent inline
    seconds: float
    retries: int                  # throttling / slow-down retries botocore made on our requests
    max_instances_seen: int
    instance_seconds: float       # what the endpoint's instances spent during the run: what AWS bills
    median_latency_seconds: float | None = None  # endpoint's notification -> result decoded here

    @property
    def rows_per_second(self) -> float:
        return (self.rows - self.rows_failed) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rows_per_second": self.rows_per_second}


@dataclass(frozen=True)
class BatchResult:
    """``predictions``: one row per input row, same index (failed rows hold missing values);
    ``failures``: one row per failed input row, indexed like the input, with the inference id, the
    error text and the failure object's location; ``metrics``: see :class:`RunMetrics`."""

    predictions: pd.DataFrame
    failures: pd.DataFrame
    metrics: RunMetrics

    def __repr__(self) -> str:
        m = self.metrics
        return (f"BatchResult({m.rows} rows, {m.rows_failed} failed, {m.payloads} payloads, "
                f"{m.seconds:.1f}s, {m.rows_per_second:.0f} rows/s)")


FAILURE_COLUMNS = ["inference_id", "error", "failure_location"]
