"""The gauge a lane asks before it starts another worker (``dispatch/cpu.py``): no growth on
no evidence, and never on a window that averages a burst with the quiet before it."""

from __future__ import annotations

import asyncio

import pytest

from hookgate.dispatch import cpu
from hookgate.dispatch.cpu import CpuGauge


async def test_no_new_worker_until_a_full_window_has_been_measured() -> None:
    gauge = CpuGauge(shares_cpu=False)
    try:
        assert gauge.saturated(), "the first question has no measurement behind it"
        await asyncio.sleep(cpu.WINDOW * 0.5)
        assert gauge.saturated(), "half a window is not a measurement either"
        await asyncio.sleep(cpu.WINDOW * 1.2)
        assert not gauge.saturated(), "a quiet process has CPU to spare"
    finally:
        gauge.close()


async def test_after_a_quiet_spell_the_measurement_starts_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cpu, "KEEP_SAMPLING", cpu.WINDOW * 2)
    gauge = CpuGauge(shares_cpu=False)
    try:
        gauge.saturated()
        await asyncio.sleep(cpu.WINDOW * 1.5)
        assert not gauge.saturated()
        await asyncio.sleep(cpu.WINDOW * 4)  # nobody asked: sampling stopped
        assert gauge.saturated(), "an old window says nothing about the burst that asks now"
    finally:
        gauge.close()
