"""The HTTP ceiling: Debian's nginx answering ``return 202`` with a small JSON body.

It runs in the foreground (``daemon off``) with one worker process — like the gateway's one
process — and its own prefix, config and pid in a temporary directory; it logs to
``nginx.out`` there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from bench.procs import Service
from bench.tools import ensure_free, free_port, listening, require

ANSWER = '{"requestId":"ceiling","status":"accepted"}'

CONFIG = """\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 202 '{answer}';
        }}
    }}
}}
"""


def config(*, prefix: Path, port: int) -> str:
    return CONFIG.format(prefix=prefix, port=port, answer=ANSWER)


@contextlib.contextmanager
def ceiling(prefix: Path, *, ready_timeout: float = 10.0) -> Iterator[tuple[Service, str]]:
    """Run nginx; yields the service and its URL, and stops nginx on the way out."""
    nginx = require("nginx")
    port = free_port()
    ensure_free(port)
    conf = prefix / "nginx.conf"
    conf.write_text(config(prefix=prefix, port=port))
    service = Service(
        name="nginx",
        command=[nginx, "-p", str(prefix), "-c", str(conf), "-e", "stderr"],
        log=prefix / "nginx.out",
    )
    with service.start():
        service.wait_ready(lambda: listening(port), timeout=ready_timeout)
        yield service, f"http://127.0.0.1:{port}/"
