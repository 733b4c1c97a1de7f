"""Python drivers for what wrk cannot measure: latency at one connection, and cold starts."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

from bench.errors import BenchFailure
from bench.results import Errors, Load, percentiles


def one_connection(
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    requests: int,
    status: int,
    warmup: int = 50,
) -> Load:
    """POST ``requests`` times, one after another on one keep-alive connection.

    A socket error aborts the run (there is only one connection); an unexpected status is
    counted as an HTTP error, so the caller reports the run as failed rather than as a figure.
    """
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    samples: list[float] = []
    wrong = 0
    try:
        started = time.perf_counter()
        for index in range(warmup + requests):
            sent = time.perf_counter()
            connection.request("POST", path, body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            elapsed = time.perf_counter() - sent
            if index == warmup:
                started = sent
            if index >= warmup:
                samples.append(elapsed * 1000)
                wrong += answer.status != status
    except (OSError, http.client.HTTPException) as exc:
        raise BenchFailure(f"{url}: one-connection run broke off: {exc!r}") from exc
    finally:
        connection.close()
    return Load(
        requests=requests,
        seconds=time.perf_counter() - started,
        latency=percentiles(samples),
        errors=Errors(http=wrong),
    )
