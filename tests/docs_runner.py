"""Pull the ``volume-cli ...`` commands out of the docs' fenced code blocks.

Only shell blocks count (bash, sh, shell, console); in ``console`` blocks only
``$ `` lines are commands. A line is cut at ``  #`` (a comment) and split at
``&&``/``;``/``|`` so each piece is one command.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^\s*```(\w*)\s*$")
_SPLIT = re.compile(r"\s*(?:&&|;|\|\|?)\s*")
_PROGRAM = re.compile(r"^(?:\S*/)?volume-cli(?:\s|$)")


@dataclass(frozen=True)
class DocCommand:
    file: str  # relative to the repository
    line: int
    text: str  # as written, without the prompt and trailing comment

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)[1:]


def doc_files(repo: Path) -> list[Path]:
    files = [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]
    return [path for path in files if path.name != "cli.md"]  # generated from --help


def _shell_lines(text: str) -> Iterator[tuple[int, str]]:
    language: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        fence = _FENCE.match(raw)
        if fence:
            language = None if language is not None else fence.group(1).lower()
            continue
        if language not in SHELL_LANGUAGES:
            continue
        line = raw.strip()
        if language == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        yield number, line


def _strip_comment(line: str) -> str:
    return re.split(r"\s+#\s", " " + line, maxsplit=1)[0].strip()


_INLINE = re.compile(r"`((?:\S*/)?volume-cli [^`]+)`")


def _inline_lines(text: str) -> Iterator[tuple[int, str]]:
    """Commands quoted in prose (`` `volume-cli gc` ``), outside fenced blocks."""
    inside = False
    for number, raw in enumerate(text.splitlines(), 1):
        if _FENCE.match(raw):
            inside = not inside
            continue
        if not inside:
            for match in _INLINE.finditer(raw):
                yield number, match.group(1)


def extract(repo: Path, *, inline: bool = True) -> list[DocCommand]:
    found: list[DocCommand] = []
    for path in doc_files(repo):
        relative = path.relative_to(repo).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = [*_shell_lines(text), *(_inline_lines(text) if inline else ())]
        for number, line in sorted(lines):
            for piece in _SPLIT.split(_strip_comment(line)):
                piece = piece.strip().strip("()").strip()
                if _PROGRAM.match(piece):
                    found.append(DocCommand(relative, number, re.sub(r"^\S*volume-cli", "volume-cli", piece)))
    return found
