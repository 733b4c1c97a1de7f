"""Human units in flow files: durations (``30s``, ``5m``, ``1h30m``) and sizes (``10MB``)."""

from __future__ import annotations

import re
from typing import Any

import msgspec

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?", re.IGNORECASE)
_SIZE_FACTOR = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


class Duration(float):
    """Seconds, written in a flow file as a number of seconds or ``500ms``, ``30s``, ``1h30m``."""

    @classmethod
    def parse(cls, value: object) -> Duration:
        if isinstance(value, bool):
            raise ValueError(f"expected a duration like '30s', got {value!r}")
        if isinstance(value, (int, float)):
            seconds = float(value)
        elif isinstance(value, str):
            text = value.strip().replace(" ", "")
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"expected a duration like '30s', '5m' or '1h', got {value!r}")
            seconds = sum(float(n) * _DURATION_SECONDS[u] for n, u in parts)
        else:
            raise ValueError(f"expected a duration like '30s', got {value!r}")
        if seconds < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return cls(seconds)


class ByteSize(int):
    """Bytes, written as a number or ``512KB``, ``10MB``, ``1GiB``."""

    @classmethod
    def parse(cls, value: object) -> ByteSize:
        if isinstance(value, bool):
            raise ValueError(f"expected a size like '10MB', got {value!r}")
        if isinstance(value, int):
            size = value
        elif isinstance(value, str):
            match = _SIZE.fullmatch(value.strip())
            if match is None:
                raise ValueError(f"expected a size like '10MB' or '512KiB', got {value!r}")
            size = int(float(match.group(1)) * _SIZE_FACTOR[(match.group(2) or "b").lower()])
        else:
            raise ValueError(f"expected a size like '10MB', got {value!r}")
        if size < 0:
            raise ValueError(f"a size cannot be negative, got {value!r}")
        return cls(size)


def seconds(value: float) -> Any:
    """A field default of ``value`` seconds (a factory: msgspec cannot embed unit objects)."""
    return msgspec.field(default_factory=lambda: Duration(value))


def size(value: int) -> Any:
    """A field default of ``value`` bytes."""
    return msgspec.field(default_factory=lambda: ByteSize(value))


def dec_hook(type_: type, value: Any) -> Any:
    """msgspec decode hook for the unit types; errors carry msgspec's field path."""
    if type_ is Duration:
        return Duration.parse(value)
    if type_ is ByteSize:
        return ByteSize.parse(value)
    raise NotImplementedError(f"cannot decode {type_!r}")


def enc_hook(value: Any) -> Any:
    """msgspec encode hook: units are written back as plain numbers (seconds, bytes)."""
    if isinstance(value, Duration):
        return float(value)
    if isinstance(value, ByteSize):
        return int(value)
    raise NotImplementedError(f"cannot encode {type(value)!r}")
