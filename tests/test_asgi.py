"""Reading request bodies under the flow's size limit and the listener's memory budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hookgate.asgi import BodyBudget, BodyReader, BodyTooLarge, CallerGone, SpooledBody
from hookgate.domain.limits import BODY_IN_MEMORY


def chunks(*parts: bytes, disconnect: bool = False) -> Any:
    messages = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


async def test_a_body_in_one_message_is_returned_as_is() -> None:
    reader = BodyReader(budget=BodyBudget(1024))
    assert await reader.read(chunks(b"hello"), 10) == b"hello"


async def test_a_small_body_in_pieces_stays_in_memory_and_gives_the_budget_back() -> None:
    budget = BodyBudget(1024)
    body = await BodyReader(budget=budget).read(chunks(b"a" * 100, b"b" * 100, b"c"), 1000)
    assert body == b"a" * 100 + b"b" * 100 + b"c"
    assert budget.held == 0


async def test_a_large_body_is_spooled_and_reads_back_whole_and_again(tmp_path: Path) -> None:
    piece = b"x" * 65536
    parts = [piece] * (BODY_IN_MEMORY // len(piece) + 3)
    budget = BodyBudget(10 * 1024 * 1024)
    body = await BodyReader(budget=budget, spool_dir=tmp_path).read(chunks(*parts), 10**9)
    assert isinstance(body, SpooledBody)
    assert body.size == len(piece) * len(parts)
    assert body.read() == b"".join(parts)
    for _ in range(2):  # iterable from the start every time (a re-send to another worker)
        assert b"".join([c async for c in body]) == b"".join(parts)
    assert budget.held == 0
    body.close()


async def test_when_the_budget_is_spent_even_a_small_body_goes_to_disk(tmp_path: Path) -> None:
    budget = BodyBudget(10)
    reader = BodyReader(budget=budget, spool_dir=tmp_path)
    body = await reader.read(chunks(b"first", b"0123456789ab", b"end"), 1000)
    assert isinstance(body, SpooledBody)
    assert body.read() == b"first0123456789abend"
    assert budget.held == 0
    body.close()


@pytest.mark.parametrize("parts", [(b"x" * 11,), (b"x" * 6, b"y" * 6)])
async def test_past_the_limit_reading_stops(parts: tuple[bytes, ...]) -> None:
    budget = BodyBudget(1024)
    with pytest.raises(BodyTooLarge):
        await BodyReader(budget=budget).read(chunks(*parts), 10)
    assert budget.held == 0


async def test_a_caller_gone_mid_body_gives_everything_back() -> None:
    budget = BodyBudget(1024)
    with pytest.raises(CallerGone):
        await BodyReader(budget=budget).read(chunks(b"a", b"b", disconnect=True), 100)
    assert budget.held == 0


async def test_a_spool_that_cannot_be_written_is_an_os_error(tmp_path: Path) -> None:
    budget = BodyBudget(1)
    reader = BodyReader(budget=budget, spool_dir=tmp_path / "missing")
    with pytest.raises(OSError):
        await reader.read(chunks(b"a", b"bb", b"c"), 100)
    assert budget.held == 0
