"""Orders worker: a minimal async flow that logs each order it is delivered.

It shows the two answers an async worker gives: 200 when the order is taken (the delivery is
done) and 400 when the body is not an order (the delivery fails for good instead of being
retried). Point a flow at it with ``worker.command: ["python", "orders.py"]``.
"""

from __future__ import annotations

import json
from typing import Any

from hookgate.worker import Request, Response, serve


async def handle(request: Request) -> Response | dict[str, Any]:
    try:
        order = request.json()
    except ValueError:
        return Response.json({"error": "the body is not JSON"}, status=400)
    line = {
        "order": order.get("id") if isinstance(order, dict) else None,
        "delivery": request.delivery_id,
        "attempt": request.attempt,
        "idempotency_key": request.idempotency_key,
    }
    print(json.dumps(line), flush=True)
    return {"accepted": True}


if __name__ == "__main__":
    serve(handle)
