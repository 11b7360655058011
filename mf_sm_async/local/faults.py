"""Faults armed through the control API (``POST /_mf_sm_async/faults``), so fault tests never patch the
client under test. Each armed fault hits the next ``count`` matching events, then disarms itself.

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

import logging
import os
import signal
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

KINDS = ("s3_slowdown", "throttle", "lose_notification")
MATCH_KEYS = ("endpoint", "bucket", "method")


@dataclass
class Armed:
    kind: str
    count: int
    match: dict
    hits: int = 0


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self._armed: list[Armed] = []

    def arm(self, kind: str, count: int = 1, **match) -> Armed:
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is invalid: allowed {', '.join(KINDS)}")
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count={count!r} is invalid: allowed a whole number >= 1")
        unknown = set(match) - set(MATCH_KEYS)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are invalid match keys: allowed {', '.join(MATCH_KEYS)}")
        armed = Armed(kind, count, {k: v for k, v in match.items() if v is not None})
        with self._lock:
            self._armed.append(armed)
        return armed

    def take(self, kind: str, **event) -> bool:
        """True (and one use consumed) when an armed fault of ``kind`` matches this event."""
        with self._lock:
            for armed in self._armed:
                if armed.kind == kind and all(event.get(k) == v for k, v in armed.match.items()):
                    armed.hits += 1
                    if armed.hits >= armed.count:
                        self._armed.remove(armed)
                    return True
        return False

    def pending(self) -> list[dict]:
        with self._lock:
            return [{"kind": a.kind, "remaining": a.count - a.hits, **a.match} for a in self._armed]

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
