"""What every remote source (HuggingFace, ModelScope, URL) provides to the download engine."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from volume_cli.config.model_sources import ModelSpec
from volume_cli.layout import VolumeLayout
from volume_cli.models.checksums import Checksum, published_checksum
from volume_cli.models.endpoints import EndpointPool
from volume_cli.models.http import HttpClient
from volume_cli.models.identifiers import check_repo_path as check_repo_path  # the hub clients import it from here
from volume_cli.models.manifest import ManifestFile, ModelManifest
from volume_cli.progress import Progress

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def is_pinned(revision: str | None) -> bool:
    """A 40-hex commit cannot move; a branch or tag name can."""
    return bool(revision and _COMMIT.match(revision))


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    sha256: str | None = None
    git_sha1: str | None = None
    revision: str | None = None

    @property
    def checksum(self) -> Checksum | None:
        return published_checksum(self.sha256, self.git_sha1)

    def as_manifest(self, *, size: int | None = None, sha256: str | None = None) -> ManifestFile:
        return ManifestFile(
            path=self.path,
            size=size if size is not None else (self.size or 0),
            sha256=self.sha256 or sha256,
            git_sha1=self.git_sha1,
            revision=self.revision,
        )

    @classmethod
    def from_manifest(cls, entry: ManifestFile) -> RemoteFile:
        return cls(entry.path, entry.size, entry.sha256, entry.git_sha1, entry.revision)


@dataclass(frozen=True)
class Listing:
    """The files of one model at one resolved revision."""

    resolved_commit: str | None
    files: tuple[RemoteFile, ...]
    endpoint: str | None


@dataclass(frozen=True)
class FileJob:
    file: RemoteFile
    final: Path
    partial: Path
    url_for: Callable[[str], str]
    present: bool
    # Extra request headers (a URL model's token_env); kept out of repr so no log or traceback shows them.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return self.file.size or 0


@dataclass(frozen=True)
class SourceContext:
    layout: VolumeLayout
    progress: Progress
    env: Mapping[str, str]
    consumer_modelscope_version: str | None
    now: datetime


class RemoteSource(Protocol):
    """One adapter per remote source kind; all network goes through ``pool`` and ``http``."""

    def list_remote(self, spec: ModelSpec, *, pool: EndpointPool, http: HttpClient) -> Listing: ...

    def prepare(self, spec: ModelSpec, previous: ModelManifest | None) -> None:
        """Local rearrangement before files are fetched (e.g. a ModelScope layout change)."""

    def file_jobs(self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None) -> list[FileJob]: ...

    def finalize(
        self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None, fetched_sha256: Mapping[str, str]
    ) -> ModelManifest: ...

    def auth_token(self) -> str | None: ...

    def publish(self, spec: ModelSpec, manifest: ModelManifest, previous: ModelManifest | None) -> None:
        """After the manifest is written: the one switch readers see, then what the switch replaced goes.

        The manifest comes first so that a kill between the two converges
        forward (the next run sees the switch missing and makes it) instead
        of repairing back to the previous revision.
        """


def filter_paths(
    files: Sequence[RemoteFile], allow: Sequence[str] | None, ignore: Sequence[str] | None
) -> tuple[RemoteFile, ...]:
    """huggingface_hub's own rules (``filter_repo_objects``); an empty list means no filter, as before."""
    # Imported once a listing arrived: no-op runs stay light.
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

    kept = filter_repo_objects(
        files,
        allow_patterns=list(allow) if allow else None,
        ignore_patterns=list(ignore) if ignore else None,
        key=lambda entry: entry.path,
    )
    return tuple(sorted(kept, key=lambda item: item.path))
