"""What the models engine returns: frozen, plain data for the CLI to render."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from volume_cli.errors import ChecksumError, DownloadError

ModelState = Literal["present", "missing", "incomplete", "outdated"]
ModelAction = Literal["present", "downloaded", "updated", "repaired", "relinked", "imported", "planned", "failed"]
Problem = Literal["missing", "size", "checksum"]


@dataclass(frozen=True)
class ModelStatus:
    key: str
    source: str
    state: ModelState
    requested_revision: str | None
    resolved_commit: str | None
    size_bytes: int
    file_count: int
    path: str | None  # relative to the volume root
    endpoint: str | None
    downloaded_at: datetime | None
    problems: tuple[str, ...]

    @property
    def present(self) -> bool:
        return self.state == "present"


@dataclass(frozen=True)
class ModelsStatus:
    project: str
    models: tuple[ModelStatus, ...]

    @property
    def complete(self) -> bool:
        return all(model.present for model in self.models)

    @property
    def size_bytes(self) -> int:
        return sum(model.size_bytes for model in self.models if model.present)


@dataclass(frozen=True)
class ModelOutcome:
    key: str
    source: str
    action: ModelAction
    requested_revision: str | None = None
    resolved_commit: str | None = None
    endpoint: str | None = None
    size_bytes: int = 0
    bytes_downloaded: int = 0
    files_fetched: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class DownloadResult:
    project: str
    models: tuple[ModelOutcome, ...]
    dry_run: bool
    network_used: bool
    bytes_needed: int
    free_bytes: int | None
    seconds: float

    @property
    def failed(self) -> tuple[ModelOutcome, ...]:
        return tuple(model for model in self.models if model.action == "failed")

    @property
    def complete(self) -> bool:
        return not self.dry_run and not self.failed

    @property
    def bytes_downloaded(self) -> int:
        return sum(model.bytes_downloaded for model in self.models)


@dataclass(frozen=True)
class DamagedFile:
    path: str
    problem: Problem


@dataclass(frozen=True)
class ModelVerification:
    key: str
    checked_files: int
    checked_bytes: int
    damaged: tuple[DamagedFile, ...]
    state: ModelState

    @property
    def ok(self) -> bool:
        return self.state == "present" and not self.damaged


@dataclass(frozen=True)
class VerifyResult:
    deep: bool
    models: tuple[ModelVerification, ...]

    @property
    def ok(self) -> bool:
        return all(model.ok for model in self.models)


@dataclass(frozen=True)
class ModelListing:
    key: str
    source: str
    desired_by: tuple[str, ...]  # project names; empty = on the volume but no project wants it
    state: ModelState
    requested_revision: str | None
    resolved_commit: str | None
    size_bytes: int
    path: str | None


@dataclass(frozen=True)
class RemovedModel:
    key: str
    bytes_freed: int
    path: str


@dataclass(frozen=True)
class GcResult:
    removed: tuple[RemovedModel, ...]
    kept: tuple[str, ...]
    dry_run: bool

    @property
    def bytes_freed(self) -> int:
        return sum(model.bytes_freed for model in self.removed)


@dataclass(frozen=True)
class EnsureResult:
    project: str
    skipped: bool
    complete: bool
    missing: tuple[str, ...]
    reason: str
    download: DownloadResult | None


class ModelDownloadError(DownloadError):
    """Some models failed; ``result`` says what happened to each, ``failures`` why."""

    def __init__(
        self, message: str, *, result: DownloadResult, failures: dict[str, Exception], hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.result = result
        self.failures = failures


class ModelChecksumError(ChecksumError):
    """The only failure was a checksum mismatch (e.g. a URL with a wrong sha256)."""

    def __init__(
        self, message: str, *, result: DownloadResult, failures: dict[str, Exception], hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.result = result
        self.failures = failures
