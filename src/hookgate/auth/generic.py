"""Generic HMAC signatures: the ``hmac`` entry, and the engine behind the provider presets.

The signed message is a template compiled once into literal bytes and field names, and each
secret's HMAC state is keyed once; a request then costs one ``copy()`` and the hashing of
the message per secret, with no regex and no concatenation of the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Literal, TypeVar

import msgspec

from hookgate.auth.base import (
    BAD_SIGNATURE,
    MALFORMED_HEADER,
    MISSING_SIGNATURE,
    Headers,
    Reject,
    Request,
    fresh_timestamp,
    optional,
    single,
)
from hookgate.domain.auth import signed_parts

Encoding = Literal["hex", "base64"]


T = TypeVar("T")


class HmacVerifier:
    """Checks one header holding ``prefix + encode(HMAC(secret, signed))``."""

    signs_body = True

    def __init__(
        self,
        *,
        scheme: str,
        keys: list[bytes],
        header: str,
        algorithm: str = "sha256",
        encoding: Encoding = "hex",
        prefix: str = "",
        signed: str = "{body}",
        timestamp_header: str | None = None,
        id_header: str | None = None,
        tolerance: float = 300.0,
        delivery_header: str | None = None,
    ) -> None:
        self.scheme = scheme
        self._macs = [hmac.new(key, digestmod=algorithm) for key in keys]
        size = hashlib.new(algorithm).digest_size
        self._hex = encoding == "hex"
        self._length = 2 * size if self._hex else len(base64.b64encode(bytes(size)))
        self._header = _name(header)
        self._prefix = prefix.encode()
        self._parts = _compile(signed)
        self._body_only = self._parts == ("body",)
        self._timestamp_header = _name(timestamp_header) if timestamp_header else None
        self._id_header = _name(id_header) if id_header else None
        self._tolerance = tolerance
        self._delivery_header = _name(delivery_header or id_header or "") or None

    def signed_event(
        self, request: Request, marker: bytes, decoder: msgspec.json.Decoder[T]
    ) -> T | None:
        """A provider's handshake event: a POST whose JSON body mentions ``marker``, checked
        (a bad signature raises ``Reject``) and decoded; None for any other request."""
        if request.method != "POST" or marker not in request.body:
            return None
        self.verify(request)
        try:
            return decoder.decode(request.body)
        except msgspec.DecodeError:
            return None  # signed, but not the event (a form post that merely mentions it)

    def verify(self, request: Request) -> None:
        headers = request.headers
        given = single(headers, self._header, missing=MISSING_SIGNATURE)
        if not given.startswith(self._prefix):
            raise Reject(MALFORMED_HEADER)
        given = given[len(self._prefix) :]
        if len(given) != self._length:
            raise Reject(MALFORMED_HEADER)
        if self._hex:
            given = given.lower()
        fields = None if self._body_only else self._fields(request)
        matched = False
        for base in self._macs:
            mac = base.copy()
            if fields is None:
                mac.update(request.body)
            else:
                for part in self._parts:
                    mac.update(part if isinstance(part, bytes) else fields[part])
            expected = mac.hexdigest().encode() if self._hex else base64.b64encode(mac.digest())
            matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise Reject(BAD_SIGNATURE)

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        return optional(headers, self._delivery_header) if self._delivery_header else None

    def sign(self, message: bytes) -> bytes:
        """HMAC of ``message`` with the first secret: what a handshake proves it holds."""
        mac = self._macs[0].copy()
        mac.update(message)
        return mac.digest()

    def _fields(self, request: Request) -> dict[str, bytes]:
        fields = {
            "body": request.body,
            "method": request.method.encode(),
            "path": request.path.encode("utf-8", "surrogateescape"),
        }
        if self._timestamp_header is not None:
            fields["timestamp"] = fresh_timestamp(
                single(request.headers, self._timestamp_header),
                now=request.now,
                tolerance=self._tolerance,
            )
        if self._id_header is not None and "id" in self._parts:
            fields["id"] = single(request.headers, self._id_header)
        return fields


def _name(header: str) -> bytes:
    """ASGI servers hand header names over in lower case; match them that way."""
    return header.strip().lower().encode("latin-1")


def _compile(template: str) -> tuple[bytes | str, ...]:
    parts: list[bytes | str] = []
    for literal, field in signed_parts(template):
        if literal:
            parts.append(literal.encode())
        if field is not None:
            parts.append(field)
    return tuple(parts)
