"""One stream of progress events for a run; tqdm shows it in a terminal, and the notebook widget and the
Metaflow card consume the same events.

>>> events = []
>>> progress = Progress(events.append, rows=10, payloads=2)
>>> progress.update(rows_done=10, done=2); progress.finish()
>>> events[-1].kind, events[-1].rows_done
('finished', 10)
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from dataclasses import dataclass

KINDS = ("planned", "progress", "finished")


@dataclass(frozen=True)
class ProgressEvent:
    kind: str                    # planned | progress | finished
    rows: int                    # rows in the run
    payloads: int                # top-level payloads planned
    rows_done: int = 0
    rows_failed: int = 0
    uploaded: int = 0            # payloads staged (uploaded to S3, or small enough to go inline)
    in_flight: int = 0           # invoked, outcome not yet known
    done: int = 0                # payloads whose outputs are in hand
    failed: int = 0              # payloads that failed (a split payload counts once per failing piece)
    backlog: int = 0             # this run's requests queued or running on the endpoint
    instances: int | None = None  # the endpoint's instances in service, last seen
    elapsed_seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_done / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def state(self) -> str:
        return {"planned": "planned", "progress": "scoring", "finished": "finished"}[self.kind]

    @property
    def counts_text(self) -> str:
        """Rows done and failed, as the card, the notebook panel and the text fallbacks show them."""
        return f"{self.rows_done:,} of {self.rows:,} rows done, {self.rows_failed:,} failed"

    @property
    def rates_text(self) -> str:
        instances = "?" if self.instances is None else self.instances
        return (f"{self.rows_per_second:,.0f} rows/s · {self.done}/{self.payloads} payloads · "
                f"in flight {self.in_flight} · backlog {self.backlog} · instances {instances} · "
                f"elapsed {self.elapsed_seconds:.1f}s")

    @property
    def fraction(self) -> float:
        return (self.rows_done + self.rows_failed) / self.rows if self.rows else 1.0


class Progress:
    """Keeps the counts and hands an event to ``sink`` at most every ``interval`` seconds (and always
    for ``planned`` and ``finished``)."""

    def __init__(self, sink, *, rows: int, payloads: int, interval: float = 0.2, clock=time.monotonic):
        self.sink, self.interval, self.clock = sink, interval, clock
        self.started = clock()
        self._last = -1e9
        self._lock = threading.Lock()
        self.state = ProgressEvent("planned", rows, payloads)
        self._emit(force=True)

    def update(self, **counts) -> None:
        with self._lock:
            self.state = dataclasses.replace(self.state, kind="progress", **counts)
        self._emit()

    def add(self, **deltas) -> None:
        with self._lock:
            self.state = dataclasses.replace(self.state, kind="progress", **{
                name: getattr(self.state, name) + value for name, value in deltas.items()})
        self._emit()

    def finish(self) -> None:
        with self._lock:
            self.state = dataclasses.replace(self.state, kind="finished")
        self._emit(force=True)

    def _emit(self, force: bool = False) -> None:
        now = self.clock()
        if self.sink is None or (not force and now - self._last < self.interval):
            return
        self._last = now
        self.sink(dataclasses.replace(self.state, elapsed_seconds=now - self.started))


class TqdmSink:
    """Shows the events as a tqdm bar of rows (tqdm.auto: a widget in Jupyter, text in a terminal)."""

    def __init__(self, total: int | None = None, description: str = "scoring"):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="row", desc=description, dynamic_ncols=True, leave=True)

    def __call__(self, event: ProgressEvent) -> None:
        self.bar.total = event.rows
        self.bar.n = event.rows_done + event.rows_failed
        self.bar.set_postfix(in_flight=event.in_flight, backlog=event.backlog, instances=event.instances,
                             failed_rows=event.rows_failed, refresh=False)
        self.bar.refresh()
        if event.kind == "finished":
            self.bar.close()


def sink_for(progress) -> object | None:
    """The event consumer for ``predict(progress=...)``: a callable as given; ``True`` a tqdm bar;
    ``"auto"`` the notebook widget panel (:mod:`mf_sm_async.notebook.widget`) in a running Jupyter kernel,
    else a tqdm bar when stderr is a terminal or ipykernel is loaded; ``False``/``None`` nothing."""
    if callable(progress):
        return progress
    if progress == "auto" and "ipykernel" in sys.modules:
        from .notebook.widget import ProgressPanel, in_kernel

        if in_kernel():
            return ProgressPanel()
    if progress is True or (progress == "auto" and (sys.stderr.isatty() or "ipykernel" in sys.modules)):
        return TqdmSink()
    return None
