"""Whether another worker process would only take CPU from the gateway (``Lane._may_grow``).

On a machine the gateway shares with its workers, a fast worker's second process does not add
throughput once the gateway itself is the bottleneck: it doubles the CPU per delivery. The
gauge samples this process's CPU time, and the machine's idle time, every half second while
lanes ask; a lane asks only when every slot is taken and work waits.
"""

from __future__ import annotations

import asyncio
import time

WINDOW = 0.5
"""One measurement: the CPU used over the last half second."""
KEEP_SAMPLING = 5.0
"""Sampling stops this long after the last question, and a new question starts it again."""
SATURATED = 0.85
"""This share of a core used by the gateway: it is the bottleneck."""
MIN_IDLE = 0.15
"""Less of the machine idle than this: another local process only competes for CPU."""


def machine_idle() -> tuple[float, float] | None:
    """Linux: the machine's idle and total CPU time so far (``/proc/stat``), else None."""
    try:
        with open("/proc/stat", "rb") as stat:
            fields = [float(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0.0), sum(fields)


def _share(now: tuple[float, float] | None, before: tuple[float, float] | None) -> float | None:
    """The idle share of the machine's CPU between two ``machine_idle`` readings."""
    if now is None or before is None or now[1] <= before[1]:
        return None
    return (now[0] - before[0]) / (now[1] - before[1])


class CpuGauge:
    """Sampled on a timer, not when asked: a first question after a quiet spell would
    otherwise average a burst with the quiet before it and answer "spare CPU" while the
    gateway is saturated (measured: a fast worker's flow started a process per lease in its
    first second under load, four where one was enough). Until one full window has been
    measured the answer is "saturated": no new worker on no evidence."""

    def __init__(self, *, shares_cpu: bool) -> None:
        self.shares_cpu = shares_cpu
        """Whether workers run on this machine (then the machine's idle time counts too)."""
        self._asked = 0.0
        self._last: tuple[float, float] | None = None
        self._machine: tuple[float, float] | None = None
        self._busy = 1.0
        self._idle: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def saturated(self) -> bool:
        self._asked = time.monotonic()
        if self._timer is None:
            self._busy, self._idle, self._last = 1.0, None, None
            self._sample()
        spare = self._idle is None or self._idle >= MIN_IDLE or not self.shares_cpu
        return self._busy >= SATURATED or not spare

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sample(self) -> None:
        wall, cpu, idle = time.monotonic(), time.process_time(), machine_idle()
        if self._last is not None:
            self._busy = (cpu - self._last[0]) / (wall - self._last[1])
            self._idle = _share(idle, self._machine)
        self._last, self._machine = (cpu, wall), idle
        if wall - self._asked < KEEP_SAMPLING:
            self._timer = asyncio.get_running_loop().call_later(WINDOW, self._sample)
        else:
            self._timer = None
