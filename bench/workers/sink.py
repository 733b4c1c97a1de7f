"""A worker that reads the whole request body in chunks, keeps none of it, and answers 200 with
``{"bytes": <count>, "sha256": "<hex>"}`` of what it received.

It is a raw ASGI app served by the SDK's :func:`hookgate.worker.serve` on ``$PORT``: a
``handle(request)`` function would get the body as one ``bytes``, which is what an upload
benchmark must not do.
"""

from __future__ import annotations

import hashlib
import json

from starlette.types import Receive, Scope, Send

from hookgate.worker import serve


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # no lifespan: uvicorn notes that and serves on
    digest = hashlib.sha256()
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        digest.update(chunk)
        if not message.get("more_body", False):
            break
    body = json.dumps({"bytes": size, "sha256": digest.hexdigest()}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    serve(app)
