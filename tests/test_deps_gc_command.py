"""`volume-cli deps gc` exists (issue 11: "a deps gc command where a hint names one") and is `gc`."""

from __future__ import annotations

import json
from pathlib import Path


def test_deps_gc_runs_the_same_collection_as_gc(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "volume"
    root.mkdir()
    top = cli("gc", "--dry-run", "--json", "--root", str(root))
    deps = cli("deps", "gc", "--dry-run", "--json", "--root", str(root))
    assert (top.exit_code, deps.exit_code) == (0, 0), deps.stderr
    assert json.loads(deps.stdout) == json.loads(top.stdout)


def test_deps_gc_is_listed_with_examples(cli) -> None:  # type: ignore[no-untyped-def]
    listing = cli("deps", "--help")
    assert listing.exit_code == 0 and " gc " in listing.stdout
    help_text = cli("deps", "gc", "--help")
    assert help_text.exit_code == 0 and "volume-cli deps gc --dry-run" in help_text.stdout
