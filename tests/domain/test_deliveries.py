"""Delivery states as users see them, and the ids stored requests get."""

from __future__ import annotations

import re
import time

import pytest

from hookgate.domain.deliveries import Delivery, State, new_id, rounds


def test_state_labels() -> None:
    assert [s.label for s in State] == ["queued", "leased", "done", "dead", "filtered"]
    for state in State:
        assert State.from_label(state.label) is state
        assert State.from_label(state.label.upper()) is state


def test_unknown_label_lists_the_choices() -> None:
    with pytest.raises(
        ValueError, match="unknown status 'failed'; one of: queued, leased, done, dead"
    ):
        State.from_label("failed")


def test_states_are_stable_integers_for_the_store() -> None:
    assert [int(s) for s in State] == [0, 1, 2, 3, 4]


def test_delivery_ids_are_128_bit_hex_and_sort_by_creation_time() -> None:
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    for value in (first, second):
        assert re.fullmatch(r"[0-9a-f]{32}", value)
    assert first < second
    assert len({new_id() for _ in range(10_000)}) == 10_000


def test_idempotency_key_is_the_delivery_id_whatever_the_attempt() -> None:
    delivery = Delivery(
        id="d1",
        request_id="r1",
        flow_id="f",
        state=State.LEASED,
        attempts=1,
        next_at=0,
        received_at=0,
    )
    again = Delivery(
        id="d1",
        request_id="r1",
        flow_id="f",
        state=State.LEASED,
        attempts=7,
        next_at=0,
        received_at=0,
    )
    assert delivery.idempotency_key == again.idempotency_key == "d1"


def test_a_replay_starts_a_new_round_of_attempts() -> None:
    assert rounds([1, 2, 3, 1, 2, 1]) == [1, 1, 1, 2, 2, 3]
    assert rounds([]) == []
