"""How a flow authenticates its callers: the configuration side of ``auth:`` entries.

Secrets are *references* (``env:NAME`` or ``file:PATH``), never inlined, so a stored or
returned flow never contains one. A list of references allows rotation: any one verifies.
Everything that can be checked without reading a secret is checked here, so a bad entry is
refused when the flow is applied rather than when the gateway builds its guard.
The verification itself lives in :mod:`hookgate.auth`.
"""

from __future__ import annotations

import ipaddress
import string
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from hookgate.domain.units import Duration, seconds

SecretRefs = str | list[str]

SIGNED_FIELDS = frozenset({"timestamp", "id", "body", "method", "path"})
"""What a generic ``hmac`` entry may sign, as ``{name}`` placeholders of ``signed``."""


def secret_refs(value: SecretRefs) -> list[str]:
    """The references of a ``secret`` field, checked to be ``env:`` or ``file:`` ones."""
    refs = [value] if isinstance(value, str) else list(value)
    if not refs:
        raise ValueError("at least one secret reference is needed")
    for ref in refs:
        if not ref.startswith(("env:", "file:")) or len(ref.split(":", 1)[1]) == 0:
            raise ValueError(
                "secrets are referenced, never inlined: write 'env:NAME' or 'file:PATH'"
            )
    return refs


def signed_parts(template: str) -> list[tuple[str, str | None]]:
    """``signed`` split into (literal text, field or None) pairs; ``{{``/``}}`` are braces."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"signed: {exc}") from None
    parts: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in parsed:
        if field is not None and (field not in SIGNED_FIELDS or spec or conversion):
            raise ValueError(
                f"signed: unknown placeholder {{{field}}}; "
                f"use {', '.join('{' + f + '}' for f in sorted(SIGNED_FIELDS))}"
            )
        parts.append((literal, field))
    return parts


def _check_header(name: str, what: str) -> None:
    if not name or any(c in name for c in " \t\r\n:"):
        raise ValueError(f"{what} must be an HTTP header name, got {name!r}")


def _check_networks(values: list[str], what: str) -> None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an IP address or CIDR") from None


class _Method(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    pass


class _Signed(_Method):
    secret: SecretRefs

    def __post_init__(self) -> None:
        secret_refs(self.secret)


class StandardWebhooksAuth(_Signed, tag="standard-webhooks"):
    """Standard Webhooks v1 (``whsec_`` HMAC secrets) and v1a (``whpk_`` ed25519 keys)."""

    tolerance: Duration = seconds(300)


class GithubAuth(_Signed, tag="github"):
    pass


class StripeAuth(_Signed, tag="stripe"):
    tolerance: Duration = seconds(300)


class ShopifyAuth(_Signed, tag="shopify"):
    pass


class SlackAuth(_Signed, tag="slack"):
    tolerance: Duration = seconds(300)


class MetaAuth(_Signed, tag="meta"):
    """Meta webhooks: ``secret`` is the app secret, ``verify_token`` answers subscriptions."""

    verify_token: SecretRefs

    def __post_init__(self) -> None:
        super().__post_init__()
        secret_refs(self.verify_token)


class MsgraphAuth(_Signed, tag="msgraph"):
    """Microsoft Graph change notifications: ``secret`` is the subscription's clientState."""


class ZoomAuth(_Signed, tag="zoom"):
    """Zoom webhooks: ``secret`` is the app's secret token."""

    tolerance: Duration = seconds(300)


class DropboxAuth(_Signed, tag="dropbox"):
    """Dropbox webhooks: ``secret`` is the app secret."""


class XAuth(_Signed, tag="x"):
    """X (Twitter) Account Activity: ``secret`` is the app's consumer secret."""


class OktaAuth(_Signed, tag="okta"):
    """Okta event hooks: ``secret`` is the value the hook sends in ``header``."""

    header: str = "Authorization"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_header(self.header, "header")


class TwilioAuth(_Signed, tag="twilio"):
    """Twilio: ``secret`` is the auth token; ``public_url`` is how Twilio reaches the gateway
    (scheme, host, port, any path prefix a proxy strips), since Twilio signs the URL."""

    public_url: str

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            parts = urlsplit(self.public_url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:  # a port that is not a number, a bad IPv6 literal
            ok = False
        if not ok:
            raise ValueError("public_url must be an http(s) URL such as https://hooks.example.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("public_url takes no query, fragment or credentials")


JwtAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
]  # fmt: skip
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class JwtAuth(_Method, tag="jwt"):
    """``Authorization: Bearer <JWT>`` signed by one of ``keys`` (references to PEM public
    keys, JWKs or JWK sets; shared secrets for ``HS*``) or by a key published at
    ``jwks_url``; ``iss``, ``aud`` and ``exp`` are required and checked."""

    issuer: str
    audience: str | list[str]
    keys: SecretRefs | None = None
    jwks_url: str | None = None
    algorithms: list[JwtAlgorithm] = msgspec.field(
        default_factory=lambda: ["RS256", "ES256", "EdDSA"]
    )
    leeway: Duration = seconds(60)

    def __post_init__(self) -> None:
        if (self.keys is None) == (self.jwks_url is None):
            raise ValueError("give exactly one of keys or jwks_url")
        if self.keys is not None:
            secret_refs(self.keys)
        if self.jwks_url is not None:
            parts = urlsplit(self.jwks_url)
            if not parts.hostname or not (
                parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)
            ):
                raise ValueError("jwks_url must be an https URL (http only on loopback)")
        if not self.issuer or not self.audience:
            raise ValueError("issuer and audience must not be empty")
        if not self.algorithms:
            raise ValueError("algorithms needs at least one algorithm")
        shared = {a.startswith("HS") for a in self.algorithms}
        if len(shared) > 1:
            # One entry verifies with either shared secrets or public keys, never both: a
            # public key used as an HMAC secret is the classic way to forge a JWT.
            raise ValueError("algorithms: do not mix HS* with public-key algorithms")
        if shared == {True} and self.jwks_url is not None:
            raise ValueError("HS* algorithms need keys (shared secrets), not jwks_url")


class HmacAuth(_Signed, tag="hmac"):
    """Any HMAC scheme: header, digest, encoding, prefix and what is signed."""

    header: str
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    signed: str = "{body}"
    timestamp_header: str | None = None
    id_header: str | None = None
    tolerance: Duration = seconds(300)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_header(self.header, "header")
        fields = {field for _, field in signed_parts(self.signed)}
        # A signature that leaves out the body, or a timestamp that is checked but not
        # signed, would let a captured request be altered or replayed: refuse both. An id
        # may go unsigned: it then only serves deduplication, as GitHub's does.
        if "body" not in fields:
            raise ValueError("signed must contain {body}, else the body could be altered")
        if ("timestamp" in fields) != (self.timestamp_header is not None):
            raise ValueError(
                "{timestamp} in signed and timestamp_header go together: give both or neither"
            )
        if "id" in fields and self.id_header is None:
            raise ValueError("{id} in signed needs id_header")
        for field, header in (("timestamp", self.timestamp_header), ("id", self.id_header)):
            if header is not None:
                _check_header(header, f"{field}_header")


class OihAuth(_Signed, tag="oih"):
    """Open Integration Hub convention: ``x-hmac`` header, base64 HMAC-SHA256 of the body."""


class BearerAuth(_Method, tag="bearer"):
    token: SecretRefs

    def __post_init__(self) -> None:
        secret_refs(self.token)


class BasicAuth(_Method, tag="basic"):
    username: str
    password: SecretRefs

    def __post_init__(self) -> None:
        if not self.username or ":" in self.username:
            raise ValueError("username must be non-empty and cannot contain ':'")
        secret_refs(self.password)


class IpAuth(_Method, tag="ip"):
    """Callers admitted by address; ``trusted_proxies`` may name them in X-Forwarded-For."""

    allow: list[str]
    trusted_proxies: list[str] = []

    def __post_init__(self) -> None:
        if not self.allow:
            raise ValueError("allow needs at least one address or CIDR")
        _check_networks(self.allow, "allow")
        _check_networks(self.trusted_proxies, "trusted_proxies")


AuthMethod = (
    StandardWebhooksAuth
    | GithubAuth
    | StripeAuth
    | ShopifyAuth
    | SlackAuth
    | MetaAuth
    | MsgraphAuth
    | ZoomAuth
    | DropboxAuth
    | XAuth
    | OktaAuth
    | TwilioAuth
    | JwtAuth
    | HmacAuth
    | OihAuth
    | BearerAuth
    | BasicAuth
    | IpAuth
)
