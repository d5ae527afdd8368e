"""One file from a URL into a partial file: resumed with ``Range``, hashed as it arrives, verified.

The caller renames the partial into place only after ``fetch_to_partial``
returned, so nothing half-written is ever visible at a final path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from volume_cli.fileops import open_partial_for_append, remove_tree
from volume_cli.models.checksums import Checksum, StreamHasher, feed_file
from volume_cli.models.http import HttpClient, TransientFailure, check_status

if TYPE_CHECKING:
    import requests

_CHUNK = 1024 * 1024


class ChecksumMismatch(Exception):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class Fetched:
    size: int
    sha256: str | None  # computed when no checksum was expected (URL sources)


def fetch_to_partial(
    client: HttpClient,
    url: str,
    *,
    headers: Mapping[str, str],
    partial: Path,
    size: int | None,
    checksum: Checksum | None,
    on_bytes: Callable[[int], None],
) -> Fetched:
    """Download ``url`` into ``partial`` (resuming it), verified; the caller renames it into place."""
    job = _ResumableFetch(client, url, headers, partial, size, checksum, on_bytes)
    mismatches = 0
    while True:
        try:
            fetched: Fetched = client.retrying(url, job.attempt)
            return fetched
        except ChecksumMismatch:
            # A stale partial from another run can poison a resume: retry once from zero.
            mismatches += 1
            if mismatches > 1:
                raise


@dataclass
class _ResumableFetch:
    """State of one file across attempts, so a retry resumes instead of starting over."""

    client: HttpClient
    url: str
    headers: Mapping[str, str]
    partial: Path
    size: int | None
    checksum: Checksum | None
    on_bytes: Callable[[int], None]
    hasher: StreamHasher | None = None
    written: int = 0  # bytes in the partial that the hasher has seen and progress counted

    def _new_hasher(self) -> StreamHasher:
        if self.checksum is not None:
            return self.checksum.new_hasher(self.size or 0)
        return StreamHasher("sha256", 0)

    def _restart(self) -> None:
        self.on_bytes(-self.written)
        self.partial.unlink(missing_ok=True)
        self.hasher = self._new_hasher()
        self.written = 0

    def _adopt_partial(self) -> None:
        """First attempt: continue what an earlier (killed) run left in the partial file."""
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.hasher = self._new_hasher()
        try:
            info = os.lstat(self.partial)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            # A symlink (or a hard link) planted at the partial's name is dropped as a link: the file it
            # shares bytes with is never read or appended to.
            remove_tree(self.partial, checked=True)  # checked inside its cache when the job was made
            return
        existing = info.st_size
        if self.size is not None and existing > self.size:
            self.partial.unlink()
            return
        self.written = feed_file(self.partial, self.hasher, limit=existing)
        self.on_bytes(self.written)

    def attempt(self) -> Fetched:
        if self.hasher is None:
            self._adopt_partial()
        if self.size is not None and self.written == self.size and self.written > 0:
            return self._finish()
        headers = {**self.headers, "Accept-Encoding": "identity"}
        if self.written:
            headers["Range"] = f"bytes={self.written}-"
        response = self.client.get(self.url, headers, stream=True)
        try:
            return self._consume(response)
        finally:
            response.close()

    def _consume(self, response: requests.Response) -> Fetched:
        status = response.status_code
        if status == 416 and self.written:
            self._restart()
            raise TransientFailure("server refused to resume; starting over")
        check_status(response, self.url)
        if (
            self.written
            and status == 206
            and not response.headers.get("Content-Range", "").startswith(f"bytes {self.written}-")
        ):
            self._restart()
            raise TransientFailure("server resumed at the wrong offset; starting over")
        if self.written and status != 206:
            self._restart()  # the server ignored Range and sent the whole file
        expected_total = self.size
        if expected_total is None:
            length = response.headers.get("Content-Length")
            if length and length.isdigit():
                expected_total = self.written + int(length)
        self._stream(response)
        if expected_total is not None and self.written < expected_total:
            raise TransientFailure(f"connection closed after {self.written} of {expected_total} bytes")
        if self.size is not None and self.written != self.size:
            actual = self.written
            self._restart()
            raise ChecksumMismatch(f"{self.size} bytes", f"{actual} bytes")
        return self._finish()

    def _stream(self, response: requests.Response) -> None:
        assert self.hasher is not None
        read = self.client.guarded_reader(_chunk_reader(response), self.url)
        with os.fdopen(open_partial_for_append(self.partial), "ab") as handle:
            while True:
                try:
                    chunk = read()
                except self.client.network_errors as exc:
                    handle.flush()
                    raise TransientFailure(self.client.describe(exc, self.url)) from None
                if not chunk:
                    break
                if self.size is not None and self.written + len(chunk) > self.size:
                    # More bytes than the listing promised: stop before a hostile server fills the volume.
                    actual = self.written + len(chunk)
                    handle.close()
                    self._restart()
                    raise ChecksumMismatch(f"{self.size} bytes", f"at least {actual} bytes")
                handle.write(chunk)  # a disk error here is not retried: it is not the network's fault
                self.hasher.update(chunk)
                self.written += len(chunk)
                self.on_bytes(len(chunk))
            # No fsync: closing flushes to the file server (NFS close-to-open), which is what other
            # pods see; forcing it to stable storage per file would halve throughput for a crash
            # of the storage server itself, after which a deep verify finds any damage.

    def _finish(self) -> Fetched:
        assert self.hasher is not None
        digest = self.hasher.hexdigest()
        if self.checksum is not None and digest != self.checksum.digest:
            self._restart()
            raise ChecksumMismatch(self.checksum.digest, digest)
        sha256 = digest if self.checksum is None or self.checksum.algorithm == "sha256" else None
        return Fetched(size=self.written, sha256=sha256)


def _chunk_reader(response: requests.Response) -> Callable[[], bytes]:
    """Returns bytes as they arrive (``read1``), so a cut connection loses nothing already received.

    ``iter_content`` reads whole chunks and drops a chunk cut short, which
    would make the resume start earlier than necessary.
    """
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    if read1 is not None:
        return lambda: bytes(read1(_CHUNK, decode_content=True))
    chunks = response.iter_content(chunk_size=_CHUNK)  # urllib3 < 2
    return lambda: next(chunks, b"")
