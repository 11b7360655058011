"""The step's live Metaflow card: a progress bar, rows/s, backlog, instances and failures, refreshed
from the run's progress events (see :mod:`mf_sm_async.progress`)."""

from __future__ import annotations

import time

CARD_ID = "async_inference"
# A plain refresh only sends a data update (what the card server's live view reads); the card's HTML, which
# `python flow.py card get` and the Metaflow UI show, is re-rendered when forced. Metaflow drops any refresh,
# forced or not, that comes sooner than @card's refresh_interval (5 s by default) after the last one it took,
# and a forced one while the previous render process still runs. So refresh no more often than that, and
# force every one: a force timed on a clock of our own mostly fell on a dropped call (the card stood still).
REFRESH_EVERY_SECONDS = 5.0


class CardSink:
    """A progress-event consumer that draws on ``current.card[CARD_ID]``; a no-op outside a task with
    the card (a notebook calling ``predict`` directly)."""

    def __init__(self, title: str, rows: int):
        from metaflow import current
        from metaflow.cards import Markdown, ProgressBar

        self.card = current.card[CARD_ID] if "card" in current else None
        if self.card is None:
            return
        self.bar = ProgressBar(max=max(rows, 1), label="rows scored", value=0)
        self.line = Markdown("planning")
        self.card.append(Markdown(f"## {title}"))
        self.card.append(self.bar)
        self.card.append(self.line)
        self._refreshed = time.monotonic()
        self.card.refresh(force=True)

    def __call__(self, event) -> None:
        if self.card is None:
            return
        from metaflow.cards import Markdown

        self.bar.update(event.rows_done + event.rows_failed)
        self.line.update(f"**{event.state}**: {event.counts_text} · {event.rates_text}")
        if event.kind == "finished":
            self.card.append(Markdown(f"finished in {event.elapsed_seconds:.1f}s"))
        now = time.monotonic()
        if event.kind == "finished" or now - self._refreshed >= REFRESH_EVERY_SECONDS:
            self._refreshed = now
            self.card.refresh(force=True)
