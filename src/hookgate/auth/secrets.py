"""Resolve ``env:NAME`` / ``file:PATH`` secret references once, when a guard is built.

Errors name the variable or the file, never what it holds. A file's trailing line break is
dropped (editors and ``echo`` add one); anything else is the secret, byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path

from hookgate.domain.auth import SecretRefs, secret_refs
from hookgate.errors import ConfigError


def resolve(refs: SecretRefs, *, where: str) -> list[bytes]:
    """The secrets behind ``refs`` (several when rotating); ``where`` prefixes errors."""
    try:
        checked = secret_refs(refs)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return [_resolve_one(ref, where=where) for ref in checked]


def _resolve_one(ref: str, *, where: str) -> bytes:
    kind, _, name = ref.partition(":")
    if kind == "env":
        text = os.environ.get(name)
        if text is None:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        value = os.fsencode(text)
        label = f"environment variable {name}"
    else:
        try:
            value = Path(name).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(
                f"{where}: cannot read secret file {name}: {exc.strerror or exc}"
            ) from None
        label = f"secret file {name}"
    if not value:
        raise ConfigError(f"{where}: {label} is empty")
    return value
