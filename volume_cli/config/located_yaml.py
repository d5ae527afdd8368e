"""YAML loading that remembers where every key came from.

Config errors must name the file, the key path and the line, so we compose
the YAML node tree once, keep a map from key path to line number, and build
the plain data from the same nodes (``yaml.safe_load`` semantics).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from volume_cli.errors import ConfigError

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class LocatedDocument:
    path: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, key_path: Sequence[str | int]) -> int | None:
        """Line (1-based) of the deepest known prefix of ``key_path``."""
        parts = tuple(key_path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), None)

    def problem(self, key_path: Sequence[str | int], message: str) -> str:
        return format_problem(self.path, key_path, message, self.line_of(key_path))


def format_key_path(key_path: Sequence[str | int]) -> str:
    text = ""
    for part in key_path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def format_problem(path: Path, key_path: Sequence[str | int], message: str, line: int | None) -> str:
    location = f"{path}:{line}" if line else str(path)
    return f"{location}: {format_key_path(key_path)}: {message}"


def load_located_yaml(path: Path, *, hint: str | None = None) -> LocatedDocument:
    """Read ``path`` as YAML; raise ``ConfigError`` with a located message."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"], hint=hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"], hint=hint) from None
    return parse_located_yaml(text, path, hint=hint)


def parse_located_yaml(text: str, path: Path, *, hint: str | None = None) -> LocatedDocument:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = exc.problem or exc.context or "invalid YAML"
        location = f"{path}:{line}" if line else str(path)
        raise ConfigError([f"{location}: invalid YAML: {reason}"], hint=hint) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"], hint=hint) from None
    if root is None:
        raise ConfigError([f"{path}: the file is empty"], hint=hint)
    lines: dict[KeyPath, int] = {}
    problems: list[str] = []
    _index_lines(root, (), lines, problems, path)
    if problems:
        raise ConfigError(problems, hint=hint)
    data = yaml.SafeLoader(text).get_single_data()
    return LocatedDocument(path=path, data=data, lines=lines)


def _index_lines(
    node: yaml.Node, key_path: KeyPath, lines: dict[KeyPath, int], problems: list[str], path: Path
) -> None:
    lines[key_path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*key_path, key)
            if key in seen:
                # safe_load silently keeps the last value; a strict config must not.
                problems.append(format_problem(path, child, "duplicate key", key_node.start_mark.line + 1))
            seen.add(key)
            _index_lines(value_node, child, lines, problems, path)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*key_path, index), lines, problems, path)
