"""Twilio: ``X-Twilio-Signature: <base64 HMAC-SHA1 of the URL and the sorted form fields>``.

https://www.twilio.com/docs/usage/webhooks/webhooks-security
Twilio signs the full URL it called (scheme, host, path, query) followed by each POST field
as name then value, sorted by name (then value), with no separators; the key is the account
auth token. A JSON body is not signed itself: the URL carries ``bodySHA256``, the hex SHA-256
of the body, and that is checked instead. The URL as Twilio sees it is the configured
``public_url`` (what the gateway is reached as, through any proxy) followed by the path and
query the gateway received; like Twilio's own SDKs, it is accepted with the default port
written out or left away. No timestamp is signed; ``I-Twilio-Idempotency-Token`` names the
delivery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, urlsplit

from hookgate.auth.base import (
    BAD_SIGNATURE,
    MALFORMED_HEADER,
    MALFORMED_REQUEST,
    MISSING_SIGNATURE,
    Headers,
    Reject,
    Request,
    optional,
    query_field,
    single,
)

_SIGNATURE_LENGTH = 28  # base64 of the 20 bytes of an HMAC-SHA1
_MAX_FIELDS = 1000


class TwilioVerifier:
    scheme = "twilio"
    signs_body = True

    def __init__(self, *, keys: list[bytes], public_url: str) -> None:
        self._macs = [hmac.new(key, digestmod=hashlib.sha1) for key in keys]
        self._bases = _spellings(public_url.rstrip("/"))

    def verify(self, request: Request) -> None:
        given = single(request.headers, b"x-twilio-signature", missing=MISSING_SIGNATURE).strip()
        if len(given) != _SIGNATURE_LENGTH:
            raise Reject(MALFORMED_HEADER)
        target = request.path + ("?" + request.query if request.query else "")
        fields = self._fields(request)
        matched = False
        for base in self._bases:
            message = (base + target).encode("utf-8", "surrogateescape") + fields
            for key in self._macs:
                mac = key.copy()
                mac.update(message)
                matched |= hmac.compare_digest(base64.b64encode(mac.digest()), given)
        if not matched:
            raise Reject(BAD_SIGNATURE)

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        return optional(headers, b"i-twilio-idempotency-token")

    def _fields(self, request: Request) -> bytes:
        """What follows the URL in the signed string: the sorted form fields, or nothing
        when the URL carries the body's hash (which must then match)."""
        digest = query_field(request.query, "bodySHA256")
        if digest is not None:
            actual = hashlib.sha256(request.body).hexdigest().encode()
            if not hmac.compare_digest(actual, digest.lower().encode()):
                raise Reject(BAD_SIGNATURE)
            return b""
        if request.method == "GET" or not request.body:
            return b""
        try:
            pairs = parse_qsl(
                request.body.decode(),
                keep_blank_values=True,
                strict_parsing=True,
                errors="strict",
                max_num_fields=_MAX_FIELDS,
            )
        except (ValueError, UnicodeError):
            raise Reject(MALFORMED_REQUEST) from None
        return "".join(name + value for name, value in sorted(set(pairs))).encode()


def _spellings(url: str) -> tuple[str, ...]:
    """``url`` with its port, the scheme's default when none is written, and without one."""
    parts = urlsplit(url)
    host = parts.netloc.removesuffix(f":{parts.port}") if parts.port else parts.netloc
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with_port = parts._replace(netloc=f"{host}:{port}").geturl()
    without = parts._replace(netloc=host).geturl()
    return (without, with_port)
