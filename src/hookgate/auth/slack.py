"""Slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">``.

https://api.slack.com/authentication/verifying-requests-from-slack
The timestamp comes from ``X-Slack-Request-Timestamp`` and is held to the tolerance.
"""

from __future__ import annotations

from hookgate.auth.generic import HmacVerifier


def slack(*, keys: list[bytes], tolerance: float) -> HmacVerifier:
    return HmacVerifier(
        scheme="slack",
        keys=keys,
        header="x-slack-signature",
        prefix="v0=",
        signed="v0:{timestamp}:{body}",
        timestamp_header="x-slack-request-timestamp",
        tolerance=tolerance,
    )
