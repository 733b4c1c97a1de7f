"""Sessions: the token buys a random session that expires; nothing else opens one."""

from __future__ import annotations

from hookgate.console.sessions import Sessions, same


def test_only_the_admin_token_is_admitted() -> None:
    sessions = Sessions(token="right")
    assert sessions.admits("right")
    assert sessions.admits(" right\n")
    assert not sessions.admits("wrong")
    assert not sessions.admits("")


def test_a_session_expires_after_its_ttl() -> None:
    sessions = Sessions(token="t", ttl=60)
    session = sessions.open(now=1000.0)
    assert sessions.get(session.id, now=1059.0) == session
    assert sessions.get(session.id, now=1060.0) is None
    assert sessions.get(session.id, now=1000.0) is None


def test_sessions_are_random_and_closable() -> None:
    sessions = Sessions(token="t")
    one, two = sessions.open(now=0), sessions.open(now=0)
    assert one.id != two.id and one.csrf != two.csrf
    assert len(one.id) >= 40
    sessions.close(one.id)
    assert sessions.get(one.id, now=1) is None
    assert sessions.get(two.id, now=1) == two


def test_the_oldest_sessions_go_beyond_the_limit() -> None:
    sessions = Sessions(token="t", limit=2)
    first, second, third = (sessions.open(now=0) for _ in range(3))
    assert sessions.get(first.id, now=1) is None
    assert sessions.get(second.id, now=1) == second
    assert sessions.get(third.id, now=1) == third


def test_csrf_comparison() -> None:
    assert same("abc", "abc")
    assert not same("abd", "abc")
    assert not same(None, "abc")
    assert not same("", "abc")
