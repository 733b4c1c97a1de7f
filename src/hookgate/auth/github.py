"""GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.

https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
GitHub signs no timestamp, so replays are caught only by deduplication on
``X-GitHub-Delivery`` (which is not signed either).
"""

from __future__ import annotations

from hookgate.auth.generic import HmacVerifier


def github(*, keys: list[bytes]) -> HmacVerifier:
    return HmacVerifier(
        scheme="github",
        keys=keys,
        header="x-hub-signature-256",
        prefix="sha256=",
        delivery_header="x-github-delivery",
    )
