"""Shopify: ``X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>``.

https://shopify.dev/docs/apps/build/webhooks/verify-deliveries
The key is the app's client secret as text; duplicates carry the same X-Shopify-Webhook-Id.
"""

from __future__ import annotations

from hookgate.auth.generic import HmacVerifier


def shopify(*, keys: list[bytes]) -> HmacVerifier:
    return HmacVerifier(
        scheme="shopify",
        keys=keys,
        header="x-shopify-hmac-sha256",
        encoding="base64",
        delivery_header="x-shopify-webhook-id",
    )
