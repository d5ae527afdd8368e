"""One renderer: human text with rich, or JSON with ``--json``.

Results go to stdout, progress and messages to stderr. rich honours
``NO_COLOR`` and drops colour when stdout is not a terminal.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from rich.console import Console

from volume_cli.redact import redact_text
from volume_cli.units import format_bytes

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["emit", "format_bytes", "format_time", "short_path", "to_jsonable"]

# rich's own NO_COLOR handling drops colours but keeps bold and dim; https://no-color.org asks for
# no styling, and no colour system means no escape codes at all.
_PLAIN_STYLE: dict[str, Any] = {"color_system": None} if os.environ.get("NO_COLOR") else {}

stdout_console = Console(highlight=False, soft_wrap=True, **_PLAIN_STYLE)
if not stdout_console.is_terminal and "COLUMNS" not in os.environ:
    # Piped into a file or a log: rich would wrap tables at 80 columns.
    stdout_console = Console(highlight=False, soft_wrap=True, width=160, **_PLAIN_STYLE)
stderr_console = Console(stderr=True, highlight=False, soft_wrap=True, **_PLAIN_STYLE)


def live_terminal(console: Console) -> bool:
    """Redrawn bars only where they can be redrawn: a terminal that is not ``TERM=dumb``."""
    return console.is_terminal and not console.is_dumb_terminal and os.environ.get("TERM") != "dumb"


class _Count:
    count = 0


JSON_RESULTS = _Count()  # results written as JSON this run: an error then must not add a second document


def to_jsonable(value: Any) -> Any:
    """Dataclasses, pydantic models, paths and datetimes as plain JSON data."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):  # the core's own JSON shape
        return to_jsonable(to_dict())
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):  # a pydantic model
        return to_jsonable(model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {field.name: to_jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
        for name in _json_properties(type(value)):
            data[name] = to_jsonable(getattr(value, name))
        return data
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


_DERIVED = (
    "ok",
    "state",
    "models_state",
    "percent_used",
    "warning",
    "persistent",
    "complete",
    "present",
    "bytes_freed",
    "bytes_downloaded",
)


def _json_properties(cls: type) -> list[str]:
    # Derived facts (ok, state, percent_used) belong in the JSON too, so that
    # scripts do not re-implement them.
    return [name for name in _DERIVED if isinstance(getattr(cls, name, None), property)]


def emit(result: Any, *, as_json: bool, human: Callable[[Console], None]) -> None:
    if as_json:
        JSON_RESULTS.count += 1
        sys.stdout.write(redact_text(json.dumps(to_jsonable(result), indent=2, sort_keys=False)) + "\n")
        sys.stdout.flush()
    else:
        human(stdout_console)


def format_time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def short_path(path: Path | None) -> str:
    if path is None:
        return "-"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def plain_table() -> Table:
    """The one table style of human output; rich's table module is imported only by commands that print one."""
    from rich import box
    from rich.table import Table

    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
