"""Versioned JSON documents in the metadata store.

Each document class has a ``schema_version``. Readers migrate older versions
step by step (``MIGRATIONS[n]`` turns version n into n+1) and refuse newer
ones with a clear message instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from volume_cli.errors import StateError
from volume_cli.fileops import atomic_write_text

Migration = Callable[[dict[str, Any]], dict[str, Any]]


class StoreDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    SCHEMA_VERSION: ClassVar[int] = 1
    MIGRATIONS: ClassVar[dict[int, Migration]] = {}
    schema_version: int


DocumentT = TypeVar("DocumentT", bound=StoreDocument)


def migrate(data: dict[str, Any], cls: type[StoreDocument], *, source: Path) -> dict[str, Any]:
    version = data.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise StateError(f"{source}: missing or invalid schema_version", hint=_repair_hint(source))
    if version > cls.SCHEMA_VERSION:
        raise StateError(
            f"{source}: written by a newer volume-cli (format {version}, this one reads up to {cls.SCHEMA_VERSION})",
            hint="upgrade volume-cli: pip install -U volume-cli",
        )
    while version < cls.SCHEMA_VERSION:
        step = cls.MIGRATIONS.get(version)
        if step is None:
            raise StateError(f"{source}: no migration from format {version}", hint=_repair_hint(source))
        data = step(dict(data))
        version += 1
        data["schema_version"] = version
    return data


def read_document(path: Path, cls: type[DocumentT]) -> DocumentT | None:
    """The document at ``path``, migrated to the current version; None if absent."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_document(raw, cls, source=path)


def parse_document(raw: bytes, cls: type[DocumentT], *, source: Path) -> DocumentT:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StateError(f"{source}: not valid JSON ({exc})", hint=_repair_hint(source)) from None
    if not isinstance(data, dict):
        raise StateError(f"{source}: expected a JSON object", hint=_repair_hint(source))
    data = migrate(data, cls, source=source)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise StateError(f"{source}: {where}: {first['msg']}", hint=_repair_hint(source)) from None


def write_document(path: Path, document: StoreDocument) -> None:
    if document.schema_version != type(document).SCHEMA_VERSION:
        raise ValueError(f"refusing to write {type(document).__name__} with an old schema_version")
    atomic_write_text(path, document.model_dump_json(indent=2) + "\n")


def _repair_hint(path: Path) -> str:
    return f"inspect or remove {path}; the next install rewrites it"
