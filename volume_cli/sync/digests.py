"""The sha256 of each file a push already hashed, kept on this machine: a push with nothing new reads no file.

A push builds the manifest of the current generation, which names every file with its sha256; hashing
18,937 files (546 MB) again took most of a push that had nothing to upload. A file whose size, mtime,
inode and ctime are unchanged is the file that was hashed: ctime cannot be set back by hand, so a rewrite
that keeps size and mtime still changes it. Losing the cache costs only a rehash. One file per volume root
and project, under the push journal's folder (``$XDG_STATE_HOME/volume-cli/sync``), never on the volume.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from volume_cli.errors import StateError
from volume_cli.fileops import atomic_write_text
from volume_cli.models.checksums import hash_file
from volume_cli.store.documents import StoreDocument, read_document


def file_identity(info: os.stat_result) -> str:
    """What says a file was not rewritten since it was hashed: size, mtime_ns, inode, ctime_ns."""
    return f"{info.st_size} {info.st_mtime_ns} {info.st_ino} {info.st_ctime_ns}"


class DigestDocument(StoreDocument):
    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = SCHEMA_VERSION
    root: str
    # One string per file (not a nested object): 18,937 of them load and save in a few milliseconds.
    files: dict[str, str] = Field(
        default_factory=dict, description="path relative to the root -> 'size mtime_ns inode ctime_ns sha256'"
    )


class DigestCache:
    """Digests of one volume root's files for one project; ``sha256`` hashes only what changed."""

    def __init__(self, folder: Path, root: Path, project: str) -> None:
        where = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:16]
        self.path = folder / f"digests-{project}-{where}.json"
        self.root = os.path.realpath(root)
        try:
            loaded = read_document(self.path, DigestDocument)
        except StateError:
            loaded = None  # unreadable: hash again, it only costs time
        self._known = loaded.files if loaded is not None and loaded.root == self.root else {}
        self._used: dict[str, str] = {}
        self.hashed = 0  # files read this time

    def sha256(self, path: str, relative: str, info: os.stat_result) -> str:
        identity = file_identity(info)
        known = self._known.get(relative, "")
        if known.rpartition(" ")[0] == identity:
            digest = known.rpartition(" ")[2]
        else:
            digest = hash_file(Path(path), "sha256", size=info.st_size)
            self.hashed += 1
        self._used[relative] = f"{identity} {digest}"
        return digest

    def save(self) -> None:
        """Keep what this manifest used (files gone from the generation drop out)."""
        if self._used == self._known:
            return
        document = DigestDocument(root=self.root, files=self._used)
        try:
            atomic_write_text(self.path, document.model_dump_json() + "\n")  # one line: no indent for 19k entries
        except OSError:
            pass  # a read-only home: the next push hashes again
