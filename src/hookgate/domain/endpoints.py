"""Where a ready worker accepts HTTP: what a runtime reports, and what transports, lanes and
the proxy count their requests against."""

from __future__ import annotations

import msgspec


class Endpoint(msgspec.Struct, frozen=True):
    """A ready worker (a local process, a pod) or a destination's lane: its address, and
    ``capacity``, the most requests it may be given at a time."""

    host: str
    port: int
    capacity: int = 1

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"
