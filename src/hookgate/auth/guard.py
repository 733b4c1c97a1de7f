"""The per-flow guard: every configured method, secrets resolved, behind one call.

Any one method admits a request; with none configured every request is admitted. A guard
is built once per flow spec, so the hot path never touches the environment or a file.
``Guard.handshake`` comes first: a provider's URL handshake is answered by the scheme that
knows it, and never goes on to be checked, stored or forwarded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from hookgate.auth.base import (
    IP_DENIED,
    MALFORMED_REQUEST,
    Answer,
    Handshaker,
    Headers,
    Reject,
    Rejection,
    Request,
    Verifier,
    optional,
)
from hookgate.auth.basic import BasicVerifier
from hookgate.auth.bearer import BearerVerifier
from hookgate.auth.dropbox import DropboxVerifier
from hookgate.auth.generic import HmacVerifier
from hookgate.auth.github import github
from hookgate.auth.ip import IpVerifier
from hookgate.auth.meta import MetaVerifier
from hookgate.auth.msgraph import MsgraphVerifier
from hookgate.auth.oih import oih
from hookgate.auth.okta import OktaVerifier
from hookgate.auth.secrets import resolve
from hookgate.auth.shopify import shopify
from hookgate.auth.slack import SlackVerifier
from hookgate.auth.standard_webhooks import (
    Key,
    KeyFormatError,
    StandardWebhooksVerifier,
    parse_key,
)
from hookgate.auth.stripe import StripeVerifier
from hookgate.auth.twilio import TwilioVerifier
from hookgate.auth.x import XVerifier
from hookgate.auth.zoom import ZoomVerifier
from hookgate.domain.auth import (
    AuthMethod,
    BasicAuth,
    BearerAuth,
    DropboxAuth,
    GithubAuth,
    HmacAuth,
    IpAuth,
    JwtAuth,
    MetaAuth,
    MsgraphAuth,
    OihAuth,
    OktaAuth,
    ShopifyAuth,
    SlackAuth,
    StandardWebhooksAuth,
    StripeAuth,
    TwilioAuth,
    XAuth,
    ZoomAuth,
    secret_refs,
)
from hookgate.errors import ConfigError

_MAX_ID = 256


class Guard:
    """Built once per flow (rebuilt when the flow changes); holds resolved secrets."""

    def __init__(self, verifiers: Sequence[Verifier]) -> None:
        self._verifiers = tuple(verifiers)
        self._handshakers = tuple(v for v in self._verifiers if isinstance(v, Handshaker))
        self._needs_body = bool(self._handshakers) or any(v.signs_body for v in self._verifiers)

    @property
    def needs_body(self) -> bool:
        """Whether a method signs the body or may find a handshake in it (so a sync proxy
        must buffer the body first)."""
        return self._needs_body

    def handshake(self, request: Request) -> Answer | None:
        """The answer to a provider's handshake (given or refused), None for any other
        request. Never raises."""
        if not self._handshakers:
            return None
        for handshaker in self._handshakers:
            try:
                answer = handshaker.handshake(request)
            except Reject as exc:
                return _refused(handshaker, exc.reason)
            except Exception:
                # Fail closed, as ``check`` does: a handshake nobody foresaw is refused.
                return _refused(handshaker, MALFORMED_REQUEST)
            if answer is not None:
                return answer
        return None

    def check(self, request: Request) -> Rejection | None:
        """None = admitted (any one method admits; no methods admit all). Never raises."""
        if not self._verifiers:
            return None
        rejections: list[Rejection] = []
        for verifier in self._verifiers:
            try:
                verifier.verify(request)
            except Reject as exc:
                rejections.append(Rejection(reason=exc.reason, scheme=verifier.scheme))
            except Exception:
                # Fail closed: input no scheme foresaw is a refusal, never a 500.
                rejections.append(Rejection(reason=MALFORMED_REQUEST, scheme=verifier.scheme))
            else:
                return None
        return min(rejections, key=_telling)

    def dedupe_key(self, headers: Headers, body: bytes) -> str | None:
        """The provider's delivery id (or the caller's ``Idempotency-Key``), else None."""
        try:
            for verifier in self._verifiers:
                found = verifier.delivery_id(headers, body)
                if found:
                    return _key(found)
            found = optional(headers, b"idempotency-key")
            return _key(found) if found else None
        except Exception:
            return None


def _refused(handshaker: Handshaker, reason: str) -> Answer:
    return Answer(scheme=handshaker.scheme, status=handshaker.refused, outcome=reason)


def _telling(rejection: Rejection) -> int:
    """Rank refusals so the log shows the most telling one: something sent and found wrong
    beats an address not on the list, which beats a header another method would have needed.
    """
    if rejection.reason.startswith("missing-"):
        return 2
    return 1 if rejection.reason == IP_DENIED else 0


def _key(raw: bytes) -> str | None:
    text = raw.strip().decode("latin-1")
    return text if 0 < len(text) <= _MAX_ID else None


def build_guard(auth: Sequence[AuthMethod]) -> Guard:
    """Resolve every secret now; ConfigError names a missing variable or file, not a value."""
    return Guard(
        [_build(method, where=f"auth[{i}] ({_tag(method)})") for i, method in enumerate(auth)]
    )


def _tag(method: AuthMethod) -> str:
    return str(type(method).__struct_config__.tag)


def _build(method: AuthMethod, *, where: str) -> Verifier:
    if isinstance(method, StandardWebhooksAuth):
        return _standard_webhooks(method, where=where)
    if isinstance(method, GithubAuth):
        return github(keys=resolve(method.secret, where=where))
    if isinstance(method, StripeAuth):
        return StripeVerifier(keys=resolve(method.secret, where=where), tolerance=method.tolerance)
    if isinstance(method, ShopifyAuth):
        return shopify(keys=resolve(method.secret, where=where))
    if isinstance(method, SlackAuth):
        return SlackVerifier(keys=resolve(method.secret, where=where), tolerance=method.tolerance)
    if isinstance(method, MetaAuth):
        return MetaVerifier(
            keys=resolve(method.secret, where=where),
            verify_tokens=resolve(method.verify_token, where=f"{where} verify_token"),
        )
    if isinstance(method, MsgraphAuth):
        return MsgraphVerifier(client_states=resolve(method.secret, where=where))
    if isinstance(method, ZoomAuth):
        return ZoomVerifier(keys=resolve(method.secret, where=where), tolerance=method.tolerance)
    if isinstance(method, DropboxAuth):
        return DropboxVerifier(keys=resolve(method.secret, where=where))
    if isinstance(method, XAuth):
        return XVerifier(keys=resolve(method.secret, where=where))
    if isinstance(method, OktaAuth):
        return OktaVerifier(secrets=resolve(method.secret, where=where), header=method.header)
    if isinstance(method, TwilioAuth):
        keys = resolve(method.secret, where=where)
        return TwilioVerifier(keys=keys, public_url=method.public_url)
    if isinstance(method, JwtAuth):
        return _jwt(method, where=where)
    if isinstance(method, OihAuth):
        return oih(keys=resolve(method.secret, where=where))
    if isinstance(method, HmacAuth):
        return HmacVerifier(
            scheme="hmac",
            keys=resolve(method.secret, where=where),
            header=method.header,
            algorithm=method.algorithm,
            encoding=method.encoding,
            prefix=method.prefix,
            signed=method.signed,
            timestamp_header=method.timestamp_header,
            id_header=method.id_header,
            tolerance=method.tolerance,
        )
    if isinstance(method, BearerAuth):
        return BearerVerifier(tokens=resolve(method.token, where=where))
    if isinstance(method, BasicAuth):
        return BasicVerifier(
            username=method.username, passwords=resolve(method.password, where=where)
        )
    if isinstance(method, IpAuth):
        return IpVerifier(allow=method.allow, trusted_proxies=method.trusted_proxies)
    assert_never(method)


def _jwt(method: JwtAuth, *, where: str) -> Verifier:
    # PyJWT and httpx (for JWKS) load only when a flow uses jwt: ~5 MB a gateway need not pay.
    from hookgate.auth.jwt_bearer import JwtVerifier, KeyMaterialError

    try:
        return JwtVerifier(
            issuer=method.issuer,
            audience=method.audience,
            algorithms=method.algorithms,
            leeway=method.leeway,
            keys=None if method.keys is None else resolve(method.keys, where=where),
            jwks_url=method.jwks_url,
        )
    except KeyMaterialError as exc:
        raise ConfigError(f"{where}: keys: {exc}") from None


def _standard_webhooks(method: StandardWebhooksAuth, *, where: str) -> Verifier:
    keys: list[Key] = []
    for ref in secret_refs(method.secret):
        try:
            keys.append(parse_key(resolve(ref, where=where)[0]))
        except KeyFormatError as exc:
            raise ConfigError(f"{where}: {ref}: {exc}") from None
    return StandardWebhooksVerifier(keys=keys, tolerance=method.tolerance)
