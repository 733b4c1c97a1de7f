"""Open Integration Hub convention: ``x-hmac: <base64 HMAC-SHA256 of the body>``.

https://github.com/openintegrationhub/openintegrationhub/tree/master/services/webhooks
"""

from __future__ import annotations

from hookgate.auth.generic import HmacVerifier


def oih(*, keys: list[bytes]) -> HmacVerifier:
    return HmacVerifier(scheme="oih", keys=keys, header="x-hmac", encoding="base64")
