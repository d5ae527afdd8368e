"""docs/cli.md is generated from the app; it must match the app as it is."""

from __future__ import annotations

from pathlib import Path

from volume_cli.cli.reference import render_reference

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text() == render_reference(), "regenerate with: python -m volume_cli.cli.reference docs/cli.md"


def test_reference_covers_every_command() -> None:
    text = render_reference()
    for command in ("volume-cli status", "volume-cli projects new", "volume-cli deps list", "volume-cli env"):
        assert f"## `{command}`" in text
