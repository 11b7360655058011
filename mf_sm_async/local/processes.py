"""Small process helpers the emulator's child processes share (rclone, model servers, mapped commands)."""

from __future__ import annotations

import ctypes
import signal
import socket
import sys


def free_port() -> int:
    """A loopback port free right now (another process may still take it before it is bound)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def die_with_parent(sig: int = signal.SIGTERM):
    """A ``preexec_fn`` for ``subprocess.Popen``: the kernel sends ``sig`` to the child when the thread that
    started it exits, even by SIGKILL (PR_SET_PDEATHSIG). Linux only: elsewhere None (no such hook)."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(1, sig)

    return preexec
