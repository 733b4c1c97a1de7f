"""IP allowlist, with trusted proxies for ``X-Forwarded-For``.

The direct peer is the client unless it is a trusted proxy; only then is X-Forwarded-For
read, right to left, skipping trusted proxies: the first address that is not one is the
client. Entries left of it were written by the client itself and are never believed.
"""

from __future__ import annotations

import functools
import ipaddress

from hookgate.auth.base import IP_DENIED, MALFORMED_HEADER, Headers, Reject, Request

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: list[str]) -> list[Network]:
    return [ipaddress.ip_network(value, strict=False) for value in values]


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> Address:
    """An address, with IPv4-mapped IPv6 (``::ffff:a.b.c.d``) taken as the IPv4 address.

    Cached: senders come from few addresses, and parsing is most of what this check costs.
    """
    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class IpVerifier:
    scheme = "ip"
    signs_body = False

    def __init__(self, *, allow: list[str], trusted_proxies: list[str]) -> None:
        self._allow = parse_networks(allow)
        self._trusted = parse_networks(trusted_proxies)

    def verify(self, request: Request) -> None:
        if request.client is None:
            raise Reject(IP_DENIED)
        try:
            client = parse_address(request.client)
        except ValueError:
            raise Reject(IP_DENIED) from None
        if self._is_trusted(client):
            client = self._forwarded_client(request.headers, client)
        if not any(client in network for network in self._allow):
            raise Reject(IP_DENIED)

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        return None

    def _is_trusted(self, address: Address) -> bool:
        return any(address in network for network in self._trusted)

    def _forwarded_client(self, headers: Headers, proxy: Address) -> Address:
        # Repeated X-Forwarded-For headers are one list, in order (RFC 9110 §5.3).
        chain = b",".join(value for name, value in headers if name == b"x-forwarded-for")
        if not chain.strip():
            return proxy
        client = proxy
        for entry in reversed(chain.split(b",")):
            try:
                client = parse_address(entry.decode("ascii"))
            except ValueError:
                raise Reject(MALFORMED_HEADER) from None
            if not self._is_trusted(client):
                return client
        return client
