"""A distribution's ``.dist-info``: its METADATA name/version and its RECORD, checked against the bytes on disk.

Separate from the store entries because check, plan and the console-script
shims read dist-info too, and none of them needs the store's file operations.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import posixpath
from collections.abc import Callable
from pathlib import Path


def read_metadata_fields(path: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                break
            key, sep, value = line.partition(":")
            if sep and key in ("Name", "Version") and key not in fields:
                fields[key] = value.strip()
    return fields


def read_record(path: Path) -> list[tuple[str, str, str]]:
    """RECORD rows as (path, hash, size); paths are POSIX, relative to site-packages."""
    with open(path, encoding="utf-8", newline="") as handle:
        return [
            (row[0], row[1] if len(row) > 1 else "", row[2] if len(row) > 2 else "")
            for row in csv.reader(handle)
            if row
        ]


def is_compiled_bytecode(path: str) -> bool:
    """Bytecode in ``__pycache__``: some wheels list it in RECORD, and ``--compile-bytecode`` rewrites it.

    Python checks such a file against its source before using it, so its bytes
    are not part of what an entry promises.
    """
    return path.endswith(".pyc") and posixpath.basename(posixpath.dirname(path)) == "__pycache__"


def record_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def record_problems(
    root: Path, rows: list[tuple[str, str, str]], *, digest_of: Callable[[Path], str] = record_digest
) -> tuple[list[tuple[str, str]], list[str]]:
    """(path, "changed" | "missing") for every RECORD row whose bytes differ; and every path RECORD lists."""
    problems: list[tuple[str, str]] = []
    paths: list[str] = []
    for path, digest, _size in rows:
        normal = posixpath.normpath(path)
        if normal.startswith(("../", "/")) or normal == "..":
            continue
        paths.append(normal)
        if not digest.startswith("sha256=") or is_compiled_bytecode(normal):
            continue
        try:
            actual = digest_of(root / normal)
        except (FileNotFoundError, NotADirectoryError):
            problems.append((normal, "missing"))
            continue
        except IsADirectoryError:
            actual = ""
        if actual != digest:
            problems.append((normal, "changed"))
    return problems, paths
