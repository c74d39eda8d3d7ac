# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting with a deadline that knows three outcomes: done, failed (stop at once), not yet.

kubernetes.core's waiter only knows "matched" and "not yet", so a failed import or a pod that cannot pull its
image would be waited on until the timeout. Here the probe raises to fail fast.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

Result = TypeVar("Result")


class Deadline:
    """A point in monotonic time; ``seconds`` of None or below 0 means no limit."""

    def __init__(self, seconds: Optional[float], clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds = seconds
        self.started = clock()
        self.at = None if seconds is None or seconds < 0 else self.started + seconds

    def remaining(self) -> Optional[float]:
        if self.at is None:
            return None
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        return self.at is not None and self.clock() >= self.at

    def elapsed(self) -> float:
        return self.clock() - self.started


def poll(probe: Callable[[], Optional[Result]], deadline: Deadline, *, first_interval: float = 0.2,
         max_interval: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> Optional[Result]:
    """Call ``probe`` until it returns something other than None, and return that; None once the deadline passed.

    ``probe`` raises to stop at once (a terminal failure). The interval doubles from ``first_interval`` up to
    ``max_interval``, and the last sleep is cut short so the probe runs once more right at the deadline.
    """
    interval = first_interval
    while True:
        outcome = probe()
        if outcome is not None:
            return outcome
        if deadline.expired():
            return None
        remaining = deadline.remaining()
        sleep(interval if remaining is None else min(interval, remaining))
        interval = min(max_interval, interval * 2)
