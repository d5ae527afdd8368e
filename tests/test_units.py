"""One byte formatter for the whole CLI: decimal SI, used by every module that shows a size."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from volume_cli.units import format_bytes, format_count

PACKAGE = Path(__file__).resolve().parents[1] / "volume_cli"


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1536, "1.5 kB"),
        (200_000_000, "200.0 MB"),
        (209_715_200, "209.7 MB"),
        (70_726_910, "70.7 MB"),
        (999_999_999, "1.0 GB"),
        (6_200_000_000, "6.2 GB"),
        (3 * 10**15, "3.0 PB"),
    ],
)
def test_format_bytes_is_decimal_si(count: int | None, text: str) -> None:
    assert format_bytes(count) == text


def test_format_count_never_uses_byte_units() -> None:
    assert format_count(1, "package") == "1 package"
    assert format_count(14, "package") == "14 packages"


def test_every_size_goes_through_one_formatter() -> None:
    """No second formatter: no module divides by 1024 for display or defines its own units table."""
    offenders: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "units.py":
            continue
        text = path.read_text()
        if re.search(r"\(\s*\"B\",\s*\"K?k?B\"", text) or re.search(r"def (human|format)_bytes\b", text):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_all_display_paths_agree() -> None:
    from volume_cli.cli import render
    from volume_cli.models import engine

    for value in (0, 1234, 209_715_200, 6_200_000_000):
        assert render.format_bytes(value) == engine.human_bytes(value) == format_bytes(value)
