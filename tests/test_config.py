"""Settings read from the environment: defaults, units, and one clear message when invalid."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookgate.config import load_settings
from hookgate.errors import ConfigError


def test_disk_reserve_defaults_to_64_mib_and_takes_a_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOKGATE_DISK_RESERVE", raising=False)
    assert load_settings(data_dir=str(tmp_path)).disk_reserve == 64 * 1024**2
    monkeypatch.setenv("HOOKGATE_DISK_RESERVE", "1GB")
    assert load_settings(data_dir=str(tmp_path)).disk_reserve == 1_000_000_000
    monkeypatch.setenv("HOOKGATE_DISK_RESERVE", "0")
    assert load_settings(data_dir=str(tmp_path)).disk_reserve == 0


def test_an_invalid_disk_reserve_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOKGATE_DISK_RESERVE", "plenty")
    with pytest.raises(ConfigError, match=r"^HOOKGATE_DISK_RESERVE: expected a size like"):
        load_settings(data_dir=str(tmp_path))
