"""The web console, mounted at ``/console`` on the admin listener.

It shares the admin API's listener but not its credential: a browser signs in once with the
admin token and then holds only a random session cookie (HttpOnly, SameSite=Strict, scoped to
``/console``, Secure when the browser came over HTTPS), and every state-changing request must
also carry the session's CSRF token, as a form field or an ``X-CSRF-Token`` header. Pages are
rendered on the server; a small script of our own adds live rows (``EventSource``) and copy
buttons.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hookgate import logs
from hookgate.console import render
from hookgate.console.charts import History
from hookgate.console.pages import Pages
from hookgate.console.rates import Rates
from hookgate.console.sessions import Session, Sessions, same
from hookgate.errors import DeliveryNotFound, FlowNotFound, HookgateError, StoreError
from hookgate.services import Services

log = logs.get("hookgate.console")

PREFIX = "/console"
SESSION_COOKIE = "hookgate_session"
SIGNIN_COOKIE = "hookgate_signin"
Handler = Callable[[Request], Awaitable[Response]]
Action = Callable[[Request, Session], Awaitable[Response]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class _Secured:
    """Browser hardening on every console response: our own scripts only, no framing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_secured)


class Console:
    def __init__(
        self,
        services: Services,
        *,
        token: str,
        live: Handler,
        trusted_proxies: Sequence[Network] = (),
    ) -> None:
        self.trusted_proxies = trusted_proxies
        self.sessions = Sessions(token=token)
        self.history = History()
        self.rates = Rates(
            services.metrics.registry,
            lambda registry, now: self.history.sample(registry, now=now),
        )
        self.stopping = services.stopping
        self.live = live
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("hookgate.console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["when"] = render.when
        env.filters["size"] = render.size
        self.templates = Jinja2Templates(env=env)
        self.pages = Pages(services, render=self.page, rates=self.rates, history=self.history)

    def start(self) -> None:
        """Start sampling request rates; needs the running event loop."""
        self.rates.start(self.stopping)

    def app(self) -> ASGIApp:
        p = self.pages
        routes: list[BaseRoute] = [
            Route("/", self._home),
            Route("/signin", self._signin_form, methods=["GET"]),
            Route("/signin", self._signin, methods=["POST"]),
            Route("/signout", self._guard(self._signout), methods=["POST"]),
            Route("/flows", self._guard(p.flows)),
            Route("/flows/stats", self._guard(p.flow_stats)),
            Route("/flows/{ref}", self._guard(p.flow)),
            Route("/flows/{ref}/charts", self._guard(p.flow_charts)),
            Route("/flows/{ref}/start", self._guard(p.start), methods=["POST"]),
            Route("/flows/{ref}/stop", self._guard(p.stop), methods=["POST"]),
            Route("/flows/{ref}/pause", self._guard(p.pause), methods=["POST"]),
            Route("/flows/{ref}/resume", self._guard(p.resume), methods=["POST"]),
            Route("/flows/{ref}/delete", self._guard(p.delete_flow), methods=["POST"]),
            Route("/search", self._guard(p.search)),
            Route("/deliveries/{id}", self._guard(p.delivery)),
            Route("/deliveries/{id}/body", self._guard(p.raw_body)),
            Route("/deliveries/{id}/replay", self._guard(p.replay_one), methods=["POST"]),
            Route("/deliveries/{id}/delete", self._guard(p.delete_one), methods=["POST"]),
            Route("/dead", self._guard(p.dead)),
            Route("/dead/replay", self._guard(p.replay_many), methods=["POST"]),
            Route("/dead/delete", self._guard(p.delete_many), methods=["POST"]),
            Route("/events", self._guard(self._events)),
            Mount("/static", StaticFiles(packages=[("hookgate.console", "static")])),
        ]
        return _Secured(Starlette(routes=routes))

    # rendering ---------------------------------------------------------------------------
    def page(
        self,
        request: Request,
        name: str,
        *,
        session: Session | None = None,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        response = self.templates.TemplateResponse(
            request,
            name,
            {"csrf": session.csrf if session else "", "signed_in": session is not None, **context},
            status_code=status_code,
        )
        response.headers["cache-control"] = "no-store"
        return response

    def message(
        self,
        request: Request,
        status_code: int,
        title: str,
        text: str,
        *,
        session: Session | None = None,
    ) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": text}, status_code=status_code)
        return self.page(
            request,
            "message.html",
            session=session,
            status_code=status_code,
            title=title,
            text=text,
        )

    # sign-in -----------------------------------------------------------------------------
    async def _home(self, request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/flows", status_code=303)

    async def _signin_form(self, request: Request) -> Response:
        reason = request.query_params.get("reason", "")
        return self._signin_page(request, reason=reason, status_code=200)

    def _signin_page(self, request: Request, *, reason: str, status_code: int) -> Response:
        nonce = secrets.token_urlsafe(32)
        response = self.page(
            request,
            "signin.html",
            status_code=status_code,
            nonce=nonce,
            next=_local(request.query_params.get("next", "")),
            notice=SIGNIN_NOTICES.get(reason, ""),
        )
        _cookie(response, SIGNIN_COOKIE, nonce, max_age=3600, secure=self._https(request))
        return response

    async def _signin(self, request: Request) -> Response:
        form = await request.form()
        nonce = request.cookies.get(SIGNIN_COOKIE, "")
        if not nonce or not same(_text(form.get("csrf")), nonce):
            return self._signin_page(request, reason="csrf", status_code=403)
        if not self.sessions.admits(_text(form.get("token")) or ""):
            return self._signin_page(request, reason="wrong", status_code=401)
        session = self.sessions.open(now=time.time())
        target = _local(_text(form.get("next")) or "") or f"{PREFIX}/flows"
        response = RedirectResponse(target, status_code=303)
        _cookie(response, SESSION_COOKIE, session.id, secure=self._https(request))
        response.delete_cookie(SIGNIN_COOKIE, path=PREFIX)
        return response

    def _https(self, request: Request) -> bool:
        """Did the browser come over HTTPS: TLS here, or a trusted proxy says so?

        ``X-Forwarded-Proto`` counts only from a peer in ``trusted_proxies``, and only its last
        value (the one that proxy set), so a client cannot claim HTTPS for itself.
        """
        if request.url.scheme == "https":
            return True
        proto = request.headers.get("x-forwarded-proto", "").rsplit(",", 1)[-1].strip().lower()
        if proto != "https" or request.client is None:
            return False
        try:
            peer = ipaddress.ip_address(request.client.host)
        except ValueError:
            return False
        return any(peer in network for network in self.trusted_proxies)

    async def _signout(self, request: Request, session: Session) -> Response:
        self.sessions.close(session.id)
        response = RedirectResponse(f"{PREFIX}/signin?reason=signedout", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    async def _events(self, request: Request, session: Session) -> Response:
        return await self.live(request)

    # the guard ---------------------------------------------------------------------------
    def _guard(self, action: Action) -> Handler:
        """Session first, then CSRF on anything that changes state, then errors as pages."""

        async def guarded(request: Request) -> Response:
            self.start()
            cookie = request.cookies.get(SESSION_COOKIE)
            session = self.sessions.get(cookie, now=time.time()) if cookie else None
            if session is None:
                return self._signed_out(request, expired=cookie is not None)
            if request.method == "POST" and not await _csrf_ok(request, session):
                return self.message(
                    request,
                    403,
                    "Security token missing",
                    "This request did not carry the page's security (CSRF) token, or carried "
                    "a stale one, so nothing was changed. Reload the page and try again.",
                    session=session,
                )
            try:
                return await action(request, session)
            except DeliveryNotFound:
                return self.message(
                    request,
                    404,
                    "Delivery not found",
                    "This delivery no longer exists: it was purged after the flow's retention "
                    "period, deleted, or its id is wrong.",
                    session=session,
                )
            except FlowNotFound as exc:
                return self.message(request, 404, "Flow not found", str(exc), session=session)
            except StoreError as exc:
                # The driver's message names the database's host, port and name: log it only.
                log.warning("console request failed in the store", error=str(exc))
                return self.message(
                    request,
                    503,
                    "Store unavailable",
                    "The store cannot be used now; try again shortly (the gateway's log says why).",
                    session=session,
                )
            except (HookgateError, ValueError) as exc:
                return self.message(request, 400, "Cannot do that", str(exc), session=session)

        return guarded

    def _signed_out(self, request: Request, *, expired: bool) -> Response:
        reason = "expired" if expired else "signin"
        if request.method != "GET" or _wants_json(request):
            response = self.message(request, 401, "Signed out", SIGNIN_NOTICES[reason])
        else:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(
                f"{PREFIX}/signin?reason={reason}&next={quote(here, safe='')}", status_code=303
            )
        if expired:
            response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response


SIGNIN_NOTICES = {
    "expired": "Your session has expired (or the gateway restarted). Sign in again.",
    "signin": "Sign in with the admin token to continue.",
    "signedout": "You are signed out.",
    "wrong": "Wrong admin token. It is in the data directory's admin-token file, or in "
    "HOOKGATE_ADMIN_TOKEN where the gateway was started.",
    "csrf": "The sign-in form had expired. Please try again.",
}


def _cookie(
    response: Response, name: str, value: str, *, secure: bool, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        secure=secure,
        httponly=True,
        samesite="strict",
    )


async def _csrf_ok(request: Request, session: Session) -> bool:
    presented = request.headers.get("x-csrf-token")
    if presented is None:
        form = await request.form()
        presented = _text(form.get("csrf"))
    return same(presented, session.csrf)


def _wants_json(request: Request) -> bool:
    """Scripts (fetch, EventSource) get a status and JSON, never a sign-in page to follow."""
    accept = request.headers.get("accept", "")
    return "x-csrf-token" in request.headers or "json" in accept or "event-stream" in accept


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _local(target: str) -> str:
    """Only a path inside the console may be a redirect target (no open redirects)."""
    ok = target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target
    return target if ok else ""
