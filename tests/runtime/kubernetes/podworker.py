"""A worker that answers with the name of its pod (``HOSTNAME``, as in a real pod)."""

from __future__ import annotations

import os

from hookgate.worker import Request, Response, serve


async def handle(request: Request) -> Response:
    return Response.json({"pod": os.environ["HOSTNAME"], "attempt": request.attempt})


if __name__ == "__main__":
    serve(handle)
