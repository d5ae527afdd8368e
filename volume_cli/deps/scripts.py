"""Console scripts that run on the workers: ``#!/usr/bin/env pythonX.Y``, not the building pod's interpreter.

uv writes ``bin/`` scripts with the absolute path of the interpreter it was
given (``#!/root/.pyenv/versions/3.10.13/bin/python3.10``, or the CLI's own
venv when the lock is for another Python), a path that does not exist on a
worker. They are rewritten in the private staging folder, before entries are
made from it, and each distribution's RECORD gets the new hash and size, so
an entry stays immutable and ``deps check`` finds it intact. A run killed
half way leaves only a staging folder, which the next run removes.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from volume_cli.deps.dist_info import read_record, record_digest

# The shebang uv writes, or its /bin/sh trampoline for interpreter paths too long for the kernel.
_SHEBANG = re.compile(rb"\A#![ \t]*(/\S*/python[0-9.]*)[ \t]*\r?\n")
_TRAMPOLINE = re.compile(
    rb"\A#!/bin/sh\r?\n'''exec' (?:\"[^\"\n]*python[0-9.]*\"|\S*python[0-9.]*) \"\$0\" \"\$@\"\r?\n' '''\r?\n"
)


def portable_shebang(python_version: str) -> bytes:
    return f"#!/usr/bin/env python{python_version}\n".encode()


def rewritten(data: bytes, python_version: str) -> bytes | None:
    """The script with a portable first line, or None when it does not start with a Python interpreter path."""
    for pattern in (_SHEBANG, _TRAMPOLINE):
        match = pattern.match(data)
        if match:
            return portable_shebang(python_version) + data[match.end() :]
    return None


def rewrite_console_scripts(target: Path, *, python_version: str) -> list[str]:
    """Rewrite every ``bin/`` script of the staged site-packages ``target``; returns the paths changed."""
    changed: dict[str, tuple[str, int]] = {}
    bin_dir = target / "bin"
    for script in sorted(bin_dir.iterdir()) if bin_dir.is_dir() else []:
        if script.is_symlink() or not script.is_file():
            continue
        with open(script, "rb") as handle:
            head = handle.read(4096)
        if rewritten(head, python_version) is None:
            continue  # a shell script or a binary: not ours to touch
        new = rewritten(script.read_bytes(), python_version)
        assert new is not None
        temporary = script.with_name(f".{script.name}.shebang")
        temporary.write_bytes(new)
        os.chmod(temporary, script.stat().st_mode & 0o7777)
        os.replace(temporary, script)
        changed[f"bin/{script.name}"] = (record_digest(script), len(new))
    if changed:
        for record in target.glob("*.dist-info/RECORD"):
            _update_record(record, changed)
    return sorted(changed)


def _update_record(record: Path, changed: dict[str, tuple[str, int]]) -> None:
    rows = read_record(record)
    if not any(os.path.normpath(path) in changed for path, _, _ in rows):
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for path, digest, size in rows:
        new = changed.get(os.path.normpath(path))
        writer.writerow([path, new[0], str(new[1])] if new else [path, digest, size])
    temporary = record.with_name(".RECORD.shebang")
    temporary.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(temporary, record)
