"""The push journal: what this machine already uploaded to one bucket, kept on the local disk.

It lets a push killed midway resume: files it names are checked with one
HEAD instead of uploaded again, and a large file's multipart upload is
continued from its recorded upload id (ListParts says which parts landed).
Losing it costs only re-uploads: the volume's own records decide what is
complete. No secret is in it: endpoint, bucket, object keys and hashes.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from volume_cli.errors import StateError
from volume_cli.remote.config import Remote
from volume_cli.store.documents import StoreDocument, read_document, write_document

_SAVE_EVERY = 32  # uploads between two saves: a kill -9 then costs at most this many re-uploads


class MultipartRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    upload_id: str
    sha256: str
    part_size: int


class JournalDocument(StoreDocument):
    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = SCHEMA_VERSION
    endpoint: str
    bucket: str
    uploaded: dict[str, str] = Field(default_factory=dict, description="object key -> sha256 of what was uploaded")
    multipart: dict[str, MultipartRecord] = Field(default_factory=dict)
    unfinished: str | None = Field(default=None, description="Generation of a push from here that did not finish")


def default_journal_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/volume-cli/sync``: the machine's own disk, never the volume."""
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".local" / "state")
    return Path(base) / "volume-cli" / "sync"


def journal_path(folder: Path, remote: Remote) -> Path:
    where = hashlib.sha256(f"{remote.endpoint}|{remote.bucket}".encode()).hexdigest()[:16]
    return folder / f"{remote.name}-{where}.json"


class PushJournal:
    """The journal of one bucket, shared by a push's upload threads."""

    def __init__(self, path: Path, remote: Remote) -> None:
        self.path = path
        try:
            loaded = read_document(path, JournalDocument)
        except StateError:
            loaded = None  # unreadable: start over, it only costs re-uploads
        if loaded is None or (loaded.endpoint, loaded.bucket) != (remote.endpoint, remote.bucket):
            loaded = JournalDocument(endpoint=remote.endpoint, bucket=remote.bucket)
        self._document = loaded
        self._uploaded = dict(loaded.uploaded)
        self._multipart = dict(loaded.multipart)
        self._lock = threading.Lock()
        self._unsaved = 0
        # A push cut short may have uploaded files its journal never saved: check incomplete entries file by file.
        self.resuming = loaded.unfinished is not None

    def begin(self, generation: str) -> None:
        with self._lock:
            self._document = self._document.model_copy(update={"unfinished": generation})
            self._save_locked()

    def finished(self) -> None:
        with self._lock:
            self._document = self._document.model_copy(update={"unfinished": None})
            self._save_locked()

    def has(self, key: str, sha256: str) -> bool:
        return self._uploaded.get(key) == sha256

    def multipart(self, key: str, sha256: str, part_size: int) -> str | None:
        record = self._multipart.get(key)
        if record is None or (record.sha256, record.part_size) != (sha256, part_size):
            return None
        return record.upload_id

    def started(self, key: str, record: MultipartRecord) -> None:
        with self._lock:
            self._multipart[key] = record
            self._save_locked()  # at once: the upload id is what a resumed run needs

    def uploaded(self, key: str, sha256: str) -> None:
        with self._lock:
            self._uploaded[key] = sha256
            dropped = self._multipart.pop(key, None)
            self._unsaved += 1
            if dropped is not None or self._unsaved >= _SAVE_EVERY:
                self._save_locked()

    def save(self) -> None:
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        document = self._document.model_copy(
            update={"uploaded": dict(self._uploaded), "multipart": dict(self._multipart)}
        )
        write_document(self.path, document)
        self._unsaved = 0
