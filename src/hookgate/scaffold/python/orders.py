"""The async flow's worker: each request the gateway accepted (202) is delivered here.

Answer 2xx when the work is done; 4xx to refuse for good (the delivery goes to dead letters);
5xx, 429 or no answer to have it retried with backoff. The same delivery may come twice (at
least once): ``request.idempotency_key`` is the same on every attempt, so dedupe on it.
"""

from __future__ import annotations

import json
from typing import Any

from hookgate.worker import Request, Response, serve


def handle(request: Request) -> Response | dict[str, Any]:
    try:
        order = request.json()
    except ValueError:
        return Response.json({"error": "the body is not JSON"}, status=400)
    print(json.dumps({"order": order, "key": request.idempotency_key}), flush=True)
    return {"done": True}


if __name__ == "__main__":
    serve(handle)
