"""YAML loading that remembers where every key came from.

Config errors must name the file, the key path and the line, so we compose
the YAML node tree once, keep a map from key path to line number, and build
the plain data from the same nodes (``yaml.safe_load`` semantics).
"""

from __future__ import annotations

import stat
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


# Config files are a few kilobytes; these bounds keep a hostile file (an alias bomb,
# 10,000 nested brackets, a multi-megabyte blob) from hanging or crashing every command.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


def load_located_yaml(path: Path, *, hint: str | None = None) -> LocatedDocument:
    """Read ``path`` as YAML; raise ``ConfigError`` with a located message."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            # A FIFO would block the read forever; a folder or device is never a config file.
            raise ConfigError([f"{path}: is not a regular file"], hint=hint)
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"], hint=hint) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"], hint=hint) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; this is not a config file"], hint=hint)
    return parse_located_yaml(_decode(raw, path, hint=hint), path, hint=hint)


def _decode(raw: bytes, path: Path, *, hint: str | None) -> str:
    if raw.startswith(_UTF16_32_BOMS) or (len(raw) > 1 and raw[1:2] == b"\x00" and raw[:1] != b"\x00"):
        raise ConfigError([f"{path}: is UTF-16 or UTF-32 encoded; save it as UTF-8"], hint=hint)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 text (byte {exc.start})"], hint=hint) from None


def parse_located_yaml(text: str, path: Path, *, hint: str | None = None) -> LocatedDocument:
    try:
        _check_depth(text, path)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            raise ConfigError([f"{path}: the file is empty"], hint=hint)
        _check_size(root, path)
        lines: dict[KeyPath, int] = {}
        problems: list[str] = []
        _index_lines(root, (), lines, problems, path)
        if problems:
            raise ConfigError(problems, hint=hint)
        data = yaml.SafeLoader("").construct_document(root)
    except ConfigError as exc:
        raise ConfigError(exc.problems, hint=hint) from None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_problem(path, exc, text)], hint=hint) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"], hint=hint) from None
    except Exception as exc:
        # PyYAML's constructors leak plain errors on hostile scalars: ValueError for an
        # integer of thousands of digits, AttributeError for a malformed !!timestamp.
        raise ConfigError([f"{path}: invalid YAML value: {type(exc).__name__}: {exc}"], hint=hint) from None
    return LocatedDocument(path=path, data=data, lines=lines)


def _yaml_problem(path: Path, exc: yaml.MarkedYAMLError, text: str) -> str:
    problem, context = exc.problem_mark, exc.context_mark
    reason = exc.problem or exc.context or "invalid YAML"
    # A construct left open (a quote, a bracket) is only noticed at the end of the file: the
    # place to fix is where it was opened, so that is the location given.
    at_end = problem is not None and "end of" in reason.replace("<stream end>", "end of stream")
    opened_by = exc.context or ""
    if context is not None and ("flow" in opened_by or "quoted" in opened_by) and context.line < _line(problem):
        opened: tuple[int, int] | None = (context.line, context.column)
    else:
        opened = _last_unclosed_bracket(text) if at_end else None
    if opened is not None:
        what = opened_by.removeprefix("while scanning ").removeprefix("while parsing ")
        if "flow node" in what or not what:
            what = f"'{text.splitlines()[opened[0]][opened[1]]}'"
        return f"{path}:{opened[0] + 1}: invalid YAML (column {opened[1] + 1}): {what} opened here is never closed ({reason})"
    mark = problem or context
    if mark is None:
        return f"{path}: invalid YAML: {reason}"
    return f"{path}:{mark.line + 1}: invalid YAML (column {mark.column + 1}): {reason}"


def _line(mark: yaml.Mark | None) -> int:
    return mark.line if mark is not None else 0


def _last_unclosed_bracket(text: str) -> tuple[int, int] | None:
    """Where the innermost ``[``/``{`` still open at the end was opened (quotes and comments skipped)."""
    stack: list[tuple[int, int]] = []
    for number, line in enumerate(text.splitlines()):
        quote = ""
        for column, char in enumerate(line):
            if quote:
                quote = "" if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char == "#" and (column == 0 or line[column - 1] in " \t"):
                break
            elif char in "[{":
                stack.append((number, column))
            elif char in "]}" and stack:
                stack.pop()
    return stack[-1] if stack else None


def _check_depth(text: str, path: Path) -> None:
    """Walk the event stream (iterative, unlike composing) so deep nesting cannot exhaust the stack."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else None
                location = f"{path}:{line}" if line else str(path)
                raise ConfigError([f"{location}: nested more than {MAX_DEPTH} levels deep"])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_size(root: yaml.Node, path: Path) -> None:
    """Count nodes as if aliases were expanded: a few lines of anchors can stand for billions of nodes."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError([f"{path}:{node.start_mark.line + 1}: an alias refers to the node containing it"])
        active.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total = 1 + sum(size(child) for child in children)
        active.discard(key)
        sizes[key] = min(total, MAX_NODES + 1)
        return sizes[key]

    if size(root) > MAX_NODES:
        raise ConfigError([f"{path}: expands to more than {MAX_NODES} values (YAML aliases?); write it out plainly"])


def _index_lines(
    node: yaml.Node, key_path: KeyPath, lines: dict[KeyPath, int], problems: list[str], path: Path
) -> None:
    lines[key_path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(
                    format_problem(path, key_path, "keys must be plain names", key_node.start_mark.line + 1)
                )
                continue
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
