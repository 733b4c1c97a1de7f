"""The sync flow's worker: the caller waits and gets this answer, status and all."""

from __future__ import annotations

from typing import Any

from hookgate.worker import Request, serve


def handle(request: Request) -> dict[str, Any]:
    name = request.body.decode("utf-8", errors="replace").strip() or "world"
    return {"hello": name, "path": request.path}


if __name__ == "__main__":
    serve(handle)
