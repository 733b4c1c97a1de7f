"""What is never shown back: credentials in stored requests, worker env values, secret fields.

One rule for every place a stored request or a flow is shown — the admin API, the CLI's
``--json`` (which is the API's answer) and the console — so they cannot drift apart. A header
is hidden when its name is a credential (``Authorization``, ``Cookie``…) or carries a
signature (any name with ``signature`` or ``hmac`` in it: GitHub, Stripe, Slack, Shopify,
Standard Webhooks, Open Integration Hub and most custom schemes). A masked value that comes
back unchanged in an edit (a GET, edited, PUT back) means "keep what is stored".
"""

from __future__ import annotations

import urllib.parse
from typing import Any

MASK = "••••••"
SECRET_FIELDS = frozenset({"secret", "token", "password"})
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token"}
)
SIGNATURE_MARKS = ("signature", "hmac")


def secret_header(name: str) -> bool:
    low = name.lower()
    return low in SECRET_HEADERS or any(mark in low for mark in SIGNATURE_MARKS)


def headers(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Credentials and signatures are shown by kind (``Bearer``…) and length only."""
    shown = []
    for name, value in pairs:
        if secret_header(name):
            scheme = value.split(" ", 1)[0] + " " if " " in value else ""
            value = f"{scheme}{MASK} ({len(value)} characters, hidden)"
        shown.append((name, value))
    return shown


def url(value: str) -> str:
    """A destination URL without its credentials: the password in ``user:password@`` and the
    query's values (``?token=…``) are masked; scheme, host, port and path stay readable."""
    parts = urllib.parse.urlsplit(value)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:{MASK}@{netloc.rpartition('@')[2]}"
    query = "&".join(
        f"{name}={MASK}" if sep else name
        for name, sep, _ in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def spec(value: Any, *, field: str = "") -> Any:
    """A flow's spec (as builtins) with every secret reference, worker env value, destination
    credential (URL password and query, secret-named headers) masked."""
    if isinstance(value, dict):
        if field == "env":
            return {e: MASK for e in value}
        if field == "headers":
            return {h: MASK if secret_header(h) else v for h, v in value.items()}
        return {k: spec(v, field=k) for k, v in value.items()}
    if isinstance(value, list):
        return [spec(v, field=field) for v in value]
    if field in SECRET_FIELDS and value is not None:
        return MASK
    if field == "url" and isinstance(value, str):
        return url(value)
    return value


def unmask(given: Any, stored: Any, *, field: str = "") -> Any:
    """``given`` with each mask put back to the stored value it hid (same place, same key).

    Only where :func:`spec` masks (env values, secret fields and headers, URL credentials: a
    URL shown masked and sent back as shown is the stored one); a mask anywhere else, or one
    with nothing stored behind it, stays as it is and is refused by validation later.
    """
    if given == MASK and isinstance(stored, str) and field in _MASKED:
        return stored
    if field == "url" and isinstance(given, str) and isinstance(stored, str):
        return stored if given == url(stored) else given
    if isinstance(given, dict) and isinstance(stored, dict):
        inner = {"env": "env", "headers": "header"}.get(field)
        return {
            k: unmask(
                v,
                stored.get(k),
                field=inner if inner and (inner == "env" or secret_header(k)) else k,
            )
            for k, v in given.items()
        }
    if isinstance(given, list) and isinstance(stored, list) and len(given) == len(stored):
        return [unmask(g, s, field=field) for g, s in zip(given, stored, strict=True)]
    return given


_MASKED = SECRET_FIELDS | {"env", "header"}
