"""Emulated time: the waiting periods the emulator imposes run ``time_scale`` times faster.

``time_scale`` divides RequestTTLSeconds (and, with autoscaling, cool-downs and alarm periods), so tests
see expiry in seconds. InvocationTimeoutSeconds measures the model's own work and is never scaled: a
model that sleeps 3 s against a 1 s timeout times out at any scale.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Clock:
    time_scale: float = 1.0
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)

    def now(self) -> float:
        """Real monotonic seconds."""
        return self.monotonic()

    def emulated(self, seconds: float) -> float:
        """Real seconds that pass for ``seconds`` of emulated waiting time."""
        return seconds / self.time_scale
