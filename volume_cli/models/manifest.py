"""Per-model manifests: ``.metadata/models/<safe key>.json``.

A manifest is written only after every file of a model is verified and in
place, so "manifest matches the files present" (presence and sizes, one
``stat`` each) is a complete offline no-op check: no hub is asked and no
byte is hashed. ``verify(deep=True)`` records files whose bytes are wrong
in ``damaged`` so the next download re-fetches exactly those.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from volume_cli.config.model_sources import ModelSpec
from volume_cli.fsguard import check_chain
from volume_cli.layout import VolumeLayout
from volume_cli.models.checksums import Algorithm, Checksum, published_checksum
from volume_cli.redact import strip_credentials
from volume_cli.store.documents import StoreDocument, read_document, write_document
from volume_cli.store.lock import lock_path

Source = Literal["huggingface", "modelscope", "url", "local"]


class ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="POSIX path relative to the manifest's files_root")
    size: int
    sha256: str | None = None
    git_sha1: str | None = Field(default=None, description="git blob id (HuggingFace non-LFS files)")
    revision: str | None = Field(default=None, description="ModelScope per-file commit (its .msc cache key)")

    @property
    def checksum(self) -> Checksum | None:
        return published_checksum(self.sha256, self.git_sha1)

    @property
    def algorithm(self) -> Algorithm | None:
        checksum = self.checksum
        return checksum.algorithm if checksum else None


class ModelManifest(StoreDocument):
    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = SCHEMA_VERSION
    key: str
    source: Source
    model_id: str = Field(description="Repo id, model id, URL or local path as configured")
    repo_type: str | None = None
    requested_revision: str | None = None
    resolved_commit: str | None = None
    spec_hash: str = Field(description="Hash of the model entry; a different entry means the files are outdated")
    target: str = Field(description="What this model owns on the volume, relative to the root (removed by gc)")
    files_root: str = Field(description="Folder the file paths are relative to, relative to the root")
    links: list[str] = Field(default_factory=list, description="Symlinks we made for other client layouts")
    layout_variant: str | None = Field(default=None, description="ModelScope: which layout holds the real files")
    source_fingerprint: str | None = Field(default=None, description="Local sources: sizes and mtimes at import")
    files: list[ManifestFile]
    total_size: int
    endpoint: str | None = None
    downloaded_at: datetime
    damaged: list[str] = Field(default_factory=list)

    @field_validator("model_id", "endpoint")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        # The volume is shared: a URL's password or token is neither written nor, from an older manifest, shown.
        return strip_credentials(value) if value and "://" in value else value


def safe_key(key: str) -> str:
    """A file-name-safe, collision-free form of a model key."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "--", key).strip("-.")[:80]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def manifest_path(layout: VolumeLayout, key: str) -> Path:
    return layout.model_manifests_dir / f"{safe_key(key)}.json"


def model_lock_path(layout: VolumeLayout, key: str) -> Path:
    return lock_path(layout.locks_dir, "model-" + safe_key(key))


def read_model_manifest(layout: VolumeLayout, key: str) -> ModelManifest | None:
    return read_document(manifest_path(layout, key), ModelManifest)


def write_manifest(layout: VolumeLayout, manifest: ModelManifest) -> None:
    write_document(manifest_path(layout, manifest.key), manifest)


def delete_manifest(layout: VolumeLayout, key: str) -> None:
    check_chain(manifest_path(layout, key), layout.root).unlink(missing_ok=True)  # never through a planted link


def all_manifests(layout: VolumeLayout) -> list[ModelManifest]:
    try:
        names = sorted(entry.name for entry in os.scandir(layout.model_manifests_dir) if entry.name.endswith(".json"))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        manifest = read_document(layout.model_manifests_dir / name, ModelManifest)
        if manifest is not None:
            found.append(manifest)
    return found


def spec_hash(spec: ModelSpec) -> str:
    """Identity of a model entry: any change to it (revision, patterns, URL, dest) means re-plan."""
    data = spec.model_dump(mode="json")
    if isinstance(data.get("url"), str):
        # Not even a hash of a password goes on the shared volume; a rotated signature is the same file.
        data["url"] = strip_credentials(data["url"])
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def models_config_hash(specs: list[ModelSpec]) -> str:
    return hashlib.sha256("\n".join(sorted(spec_hash(spec) for spec in specs)).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class QuickCheck:
    """Presence and sizes of a manifest's files (no hashing)."""

    missing: tuple[str, ...]
    wrong_size: tuple[str, ...]
    damaged: tuple[str, ...]
    present_bytes: int

    @property
    def problems(self) -> tuple[str, ...]:
        seen = dict.fromkeys(self.missing + self.wrong_size + self.damaged)
        return tuple(seen)

    @property
    def ok(self) -> bool:
        return not self.problems


def quick_check(layout: VolumeLayout, manifest: ModelManifest) -> QuickCheck:
    root = layout.absolute(manifest.files_root)
    missing: list[str] = []
    wrong: list[str] = []
    present = 0
    for entry in manifest.files:
        try:
            size = os.stat(root / entry.path).st_size  # follows HF snapshot symlinks to the blob
        except OSError:
            missing.append(entry.path)
            continue
        if size != entry.size:
            wrong.append(entry.path)
        else:
            present += size
    return QuickCheck(tuple(missing), tuple(wrong), tuple(manifest.damaged), present)
