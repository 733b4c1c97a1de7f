"""Every flow file in docs/configuration.md and examples/ parses: the docs show only what
``apply`` accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hookgate.domain.flowfile import parse_flow_file

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
FLOW_BLOCKS = [
    code
    for code in re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(), re.M | re.S)
    if code.startswith("flows:")
]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_the_destination_sections_have_their_examples() -> None:
    text = "".join(FLOW_BLOCKS)
    for field in ("destinations:", "order_key:", "rate_limit: {per_second", "delay:"):
        assert field in text


@pytest.mark.parametrize("block", FLOW_BLOCKS, ids=[f"block{i}" for i in range(len(FLOW_BLOCKS))])
def test_every_flow_file_in_the_configuration_page_parses(block: str) -> None:
    assert parse_flow_file(block, source=str(DOC))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_flow_file_parses(path: Path) -> None:
    assert parse_flow_file(path.read_text(), source=str(path))
