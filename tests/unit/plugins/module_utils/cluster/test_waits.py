# -*- coding: utf-8 -*-
# Copyright: mlops.notebooks contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Polling with a deadline: done, fail fast, or give up when the deadline passed (on a fake clock)."""

from __future__ import annotations

from typing import Optional

import pytest

from ansible_collections.mlops.notebooks.plugins.module_utils.cluster.waits import Deadline, poll


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_answer() -> None:
    clock = FakeClock()
    answers = iter([None, None, "done"])
    assert poll(lambda: next(answers), Deadline(10, clock), sleep=clock.sleep) == "done"
    assert clock.sleeps == [0.2, 0.4]


def test_gives_up_after_the_deadline_with_a_last_probe_at_it() -> None:
    clock = FakeClock()
    probes: list[float] = []

    def probe() -> Optional[str]:
        probes.append(clock.now)
        return None

    assert poll(probe, Deadline(5, clock), sleep=clock.sleep, max_interval=2.0) is None
    assert probes[-1] == pytest.approx(105.0)
    assert max(clock.sleeps) == 2.0


def test_a_failing_probe_stops_at_once() -> None:
    clock = FakeClock()

    def probe() -> Optional[str]:
        raise RuntimeError("terminal")

    with pytest.raises(RuntimeError):
        poll(probe, Deadline(60, clock), sleep=clock.sleep)
    assert clock.sleeps == []


def test_no_deadline() -> None:
    clock = FakeClock()
    deadline = Deadline(None, clock)
    assert deadline.remaining() is None and not deadline.expired()
