"""File checksums as the hubs publish them.

HuggingFace lists a sha256 for LFS files and the git blob id (sha1 of
``b"blob <size>\\0" + content``) for the others; ModelScope lists a sha256
for every file; URL and local sources get a sha256 we compute ourselves.
A file is verified against whichever of the two the manifest holds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Algorithm = Literal["sha256", "git-sha1"]
_READ_CHUNK = 4 * 1024 * 1024


class _Hash(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class Checksum:
    algorithm: Algorithm
    digest: str

    def new_hasher(self, size: int) -> StreamHasher:
        return StreamHasher(self.algorithm, size)


class StreamHasher:
    """Hashes a file as its bytes arrive (git blob ids need the size up front)."""

    def __init__(self, algorithm: Algorithm, size: int) -> None:
        self.algorithm = algorithm
        self._hash: _Hash = hashlib.sha256() if algorithm == "sha256" else hashlib.sha1()
        if algorithm == "git-sha1":
            self._hash.update(b"blob %d\0" % size)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def hash_file(path: Path, algorithm: Algorithm, *, size: int | None = None) -> str:
    """Digest of a file on disk; reads in large chunks (hashlib drops the GIL)."""
    if size is None:
        size = path.stat().st_size
    hasher = StreamHasher(algorithm, size)
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def feed_file(path: Path, hasher: StreamHasher, *, limit: int) -> int:
    """Feed the first ``limit`` bytes of ``path`` to ``hasher``; returns bytes read."""
    done = 0
    with open(path, "rb") as handle:
        while done < limit:
            chunk = handle.read(min(_READ_CHUNK, limit - done))
            if not chunk:
                break
            hasher.update(chunk)
            done += len(chunk)
    return done


def published_checksum(sha256: str | None, git_sha1: str | None) -> Checksum | None:
    """The checksum a hub lists for a file: its sha256 when there is one, else its git blob id."""
    if sha256:
        return Checksum("sha256", sha256)
    if git_sha1:
        return Checksum("git-sha1", git_sha1)
    return None
