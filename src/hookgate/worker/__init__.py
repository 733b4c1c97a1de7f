"""The optional worker SDK: serve a plain function or an ASGI app as a Hookgate worker.

::

    from hookgate.worker import Request, serve

    def handle(request: Request) -> dict[str, object]:
        order = request.json()
        return {"received": order["id"], "attempt": request.attempt}

    serve(handle)          # or: python -m hookgate.worker orders:handle

A handler may be sync or async and returns a :class:`Response`, a ``dict`` (JSON, 200), a ``str``
(text, 200), ``bytes`` (200) or ``None`` (204). Workers in other languages need none of this:
any HTTP/1.1 server on ``$PORT`` will do (design §4).
"""

from hookgate.worker.adapter import HandlerApp
from hookgate.worker.messages import Request, Response
from hookgate.worker.server import serve

__all__ = ["HandlerApp", "Request", "Response", "serve"]
