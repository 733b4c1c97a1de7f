"""``python -m hookgate.worker MODULE:ATTR``: serve an app or a handler from any module.

The module is imported with the current directory on ``sys.path``, so a flow's worker command
can be ``["python", "-m", "hookgate.worker", "orders:handle"]`` run from the worker's directory.
"""

from __future__ import annotations

import argparse
import sys

from starlette.types import ASGIApp
from uvicorn.importer import ImportFromStringError, import_from_string

from hookgate.errors import ConfigError
from hookgate.worker.adapter import Handler
from hookgate.worker.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hookgate.worker",
        description="Serve an ASGI app or a handle(request) function on $PORT.",
    )
    parser.add_argument("target", metavar="MODULE:ATTR", help="e.g. orders:handle or app:app")
    parser.add_argument("--port", type=int, help="default: $PORT")
    parser.add_argument("--host", help="default: $HOST, else 0.0.0.0 in Kubernetes, else 127.0.0.1")
    args = parser.parse_args(argv)
    try:
        serve(_load(args.target), port=args.port, host=args.host)
    except ConfigError as exc:
        print(f"hookgate.worker: {exc}", file=sys.stderr)
        return 2
    return 0


def _load(target: str) -> ASGIApp | Handler:
    try:
        loaded: ASGIApp | Handler = import_from_string(target)
    except ImportFromStringError as exc:
        raise ConfigError(str(exc)) from exc
    return loaded


if __name__ == "__main__":
    sys.exit(main())
