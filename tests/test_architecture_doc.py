"""docs/architecture.md names the code as it is (issue 11: "matches the code")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "volume_cli"


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_module_the_page_names_exists() -> None:
    named = set(re.findall(r"`?([a-z_]+(?:/[a-z_]+)*\.py)(?::([a-z_]+))?", _text()))
    assert named, "the page names no module"
    missing = []
    for path, function in sorted(named):
        where = PACKAGE / path if not path.startswith("tests/") else REPO / path
        if not where.is_file():
            missing.append(path)
        elif function:
            tree = ast.parse(where.read_text(encoding="utf-8"))
            if function not in {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}:
                missing.append(f"{path}:{function}")
    assert missing == []


def test_each_deps_verb_is_one_module_of_that_name() -> None:
    # A newcomer who knows "lock, plan, install, rollback, gc, check" finds each in one file of that name.
    for verb in ("lock", "plan", "install", "rollback", "gc", "check"):
        assert (PACKAGE / "deps" / f"{verb}.py").is_file(), verb
        assert f"`deps/{verb}.py`" in _text(), verb


def test_the_index_links_the_page() -> None:
    assert "(architecture.md)" in (REPO / "docs" / "index.md").read_text(encoding="utf-8")
