"""IP allowlist and trusted proxies for X-Forwarded-For."""

from __future__ import annotations

import msgspec
import pytest

from .support import check, methods


@pytest.fixture
def direct(make_guard):
    return make_guard({"type": "ip", "allow": ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]})


@pytest.mark.parametrize(
    ("client", "admitted"),
    [
        ("192.0.2.1", True),
        ("192.0.2.255", True),
        ("192.0.3.1", False),
        ("198.51.100.7", True),
        ("198.51.100.8", False),
        ("2001:db8::1", True),
        ("2001:db9::1", False),
        ("::ffff:192.0.2.9", True),
        ("::ffff:10.0.0.1", False),
        (None, False),
        ("", False),
        ("not-an-ip", False),
        ("unix:/tmp/sock", False),
    ],
)
def test_direct_clients(direct, client, admitted):
    rejection = check(direct, client=client)
    assert (rejection is None) is admitted
    if rejection:
        assert (rejection.scheme, rejection.reason) == ("ip", "ip-denied")


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(direct):
    spoofed = [("X-Forwarded-For", "192.0.2.1")]
    assert check(direct, spoofed, client="203.0.113.9") is not None


@pytest.fixture
def proxied(make_guard):
    return make_guard(
        {"type": "ip", "allow": ["192.0.2.0/24"], "trusted_proxies": ["10.0.0.0/8", "fd00::/8"]}
    )


@pytest.mark.parametrize(
    ("chain", "admitted"),
    [
        (["192.0.2.5"], True),
        (["203.0.113.9"], False),
        # The client wrote the left-most entry itself; the right-most untrusted one counts.
        (["192.0.2.5, 203.0.113.9"], False),
        (["203.0.113.9, 192.0.2.5"], True),
        (["192.0.2.5, 10.1.1.1, 10.2.2.2"], True),
        (["203.0.113.9, 10.1.1.1"], False),
        (["192.0.2.5", "10.1.1.1"], True),
        (["203.0.113.9", "192.0.2.5"], True),
        (["192.0.2.5", "203.0.113.9"], False),
        ([" 192.0.2.5 ,fd00::1"], True),
        ([], False),
    ],
)
def test_trusted_proxy_chains(proxied, chain, admitted):
    items = [("X-Forwarded-For", value) for value in chain]
    assert (check(proxied, items, client="10.0.0.2") is None) is admitted


def test_all_hops_trusted_means_the_left_most_is_the_client(make_guard):
    guard = make_guard({"type": "ip", "allow": ["10.9.0.0/16"], "trusted_proxies": ["10.0.0.0/8"]})
    assert check(guard, [("X-Forwarded-For", "10.9.0.1, 10.1.1.1")], client="10.0.0.2") is None


@pytest.mark.parametrize("value", ["192.0.2.5:443", "unknown", "192.0.2.5,,10.1.1.1", "\xff"])
def test_garbled_forwarded_for_from_a_trusted_proxy_is_refused(proxied, value):
    rejection = check(proxied, [("X-Forwarded-For", value)], client="10.0.0.2")
    assert rejection is not None and rejection.reason == "malformed-header"


def test_bad_networks_are_refused_when_the_flow_is_parsed():
    with pytest.raises(msgspec.ValidationError, match="not an IP address"):
        methods([{"type": "ip", "allow": ["192.0.2.0/33"]}])
    with pytest.raises(msgspec.ValidationError, match="not an IP address"):
        methods([{"type": "ip", "allow": ["192.0.2.0/24"], "trusted_proxies": ["proxy"]}])
    with pytest.raises(msgspec.ValidationError, match="at least one"):
        methods([{"type": "ip", "allow": []}])
