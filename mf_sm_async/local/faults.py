"""Faults armed through the control API (``POST /_mf_sm_async/faults``), so fault tests never patch the
client under test. Each armed fault hits the next ``count`` matching events, or every matching event for
the next ``seconds`` (a burst in time, as AWS's are), or whichever ends first; then it disarms itself.

kinds:
- ``s3_slowdown``: the next S3 requests (optionally of one ``bucket`` / ``method``) answer 503 SlowDown;
- ``throttle``: the next InvokeEndpointAsync calls (optionally of one ``endpoint``) answer
  ThrottlingException;
- ``lose_notification``: the next SNS notifications of an ``endpoint`` are silently not published.

Faults on the model-server processes themselves have routes of their own: ``kill-instance`` (the process
dies, as an instance crashing mid-request) and ``hang-instance`` (:func:`freeze`: the process stops
answering for a while, as a model stuck in a deadlock or a long GC pause, and then carries on).
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

KINDS = ("s3_slowdown", "throttle", "lose_notification")
MATCH_KEYS = ("endpoint", "bucket", "method")


@dataclass
class Armed:
    kind: str
    count: int | None
    match: dict
    until: float | None = None   # time.monotonic() when a burst in time ends
    hits: int = 0

    def over(self, now: float) -> bool:
        return (self.count is not None and self.hits >= self.count) or (self.until is not None and now >= self.until)


class Faults:
    def __init__(self, clock=time.monotonic):
        self._lock = threading.Lock()
        self._armed: list[Armed] = []
        self._clock = clock
        self.hits: collections.Counter[str] = collections.Counter()  # per kind, since the daemon started

    def arm(self, kind: str, count: int | None = None, seconds: float | None = None, **match) -> Armed:
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is invalid: allowed {', '.join(KINDS)}")
        if count is None and seconds is None:
            count = 1
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise ValueError(f"count={count!r} is invalid: allowed a whole number >= 1")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                    or not 0 < seconds <= 3600):
            raise ValueError(f"seconds={seconds!r} is invalid: allowed a number above 0 and at most 3600")
        unknown = set(match) - set(MATCH_KEYS)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are invalid match keys: allowed {', '.join(MATCH_KEYS)}")
        until = None if seconds is None else self._clock() + seconds
        armed = Armed(kind, count, {k: v for k, v in match.items() if v is not None}, until)
        with self._lock:
            self._armed.append(armed)
        return armed

    def take(self, kind: str, **event) -> bool:
        """True (and one use consumed) when an armed fault of ``kind`` matches this event."""
        now = self._clock()
        with self._lock:
            self._armed = [a for a in self._armed if not a.over(now)]
            for armed in self._armed:
                if armed.kind == kind and all(event.get(k) == v for k, v in armed.match.items()):
                    armed.hits += 1
                    self.hits[kind] += 1
                    if armed.over(now):
                        self._armed.remove(armed)
                    return True
        return False

    def pending(self) -> list[dict]:
        now = self._clock()
        with self._lock:
            self._armed = [a for a in self._armed if not a.over(now)]
            return [{"kind": a.kind, "hits": a.hits, **({"remaining": a.count - a.hits} if a.count is not None else {}),
                     **({"seconds_left": round(a.until - now, 3)} if a.until is not None else {}), **a.match}
                    for a in self._armed]

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()


def freeze(pid: int, seconds: float) -> None:
    """Stop process ``pid`` (SIGSTOP) for ``seconds``, then let it carry on (SIGCONT). A stopped model
    server accepts connections but answers nothing, so requests on it run into InvocationTimeoutSeconds."""
    os.kill(pid, signal.SIGSTOP)

    def thaw():
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass  # it was stopped (and killed) meanwhile
        log.info("model server %d carries on after a %.1f s hang", pid, seconds)
    timer = threading.Timer(seconds, thaw)
    timer.daemon = True
    timer.start()
