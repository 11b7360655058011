"""Ctrl-C and SIGTERM inside a Metaflow task, turned into an exception the step's teardown sees.

Metaflow's ``post_step`` only sees ``Exception``s, and KeyboardInterrupt is not one; on Ctrl-C the local
runtime SIGKILLs its tasks about 5 s later. So while an endpoint is held, SIGINT and SIGTERM raise
:class:`Interrupted` (an Exception) in the task's main thread, the teardown runs at once (one fast call),
and the previous handlers come back afterwards.
"""

from __future__ import annotations

import signal
import threading


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class InterruptsRaise:
    """Context manager: SIGINT / SIGTERM raise :class:`Interrupted` while inside (main thread only)."""

    def __enter__(self):
        self._saved = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._saved[signum] = signal.signal(signum, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise Interrupted(signum)

    def __exit__(self, *exc):
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        return False
