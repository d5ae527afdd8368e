"""The generation manifest: everything a volume needs to serve one generation, listed with sizes and hashes.

Object storage carries regular files only, so the manifest also lists what
only something that sees the mounted volume can make: file modes, mtimes
(timestamp-based ``.pyc`` files stay valid), the forest's links and the
models' snapshot links. It is uploaded **last**, under a pending name
(``.metadata/projects/<p>/pushed/<generation>.json``): its presence means
every file it lists was uploaded. Documents that would change what the
volume serves (generation record, lock, state, model manifests) travel
under ``pushed/<generation>/`` and are moved into place by ``sync apply``;
content-addressed files (store entries, model blobs) go straight to their
own paths, where nothing links them until the switch.

The manifest carries the sha256 of its own content: a torn or edited one
is refused instead of half-applied.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from volume_cli import __version__
from volume_cli.deps.documents import (
    ENTRY_MANIFEST,
    generation_record_path,
    lock_info_path,
    pylock_path,
    read_generation_record,
    read_lock_info,
    uv_lock_path,
)
from volume_cli.deps.entries import base_key
from volume_cli.deps.forest import current_generation, generation_dir
from volume_cli.errors import StateError, SyncManifestError
from volume_cli.fsguard import check_folder
from volume_cli.layout import VolumeLayout
from volume_cli.pushed_apply import manifest_checksum, pending_dir, safe_relative, staged_key
from volume_cli.store.documents import StoreDocument, parse_document
from volume_cli.store.state import project_state_path, read_project_state, utc_now

# (path, path relative to the root, its lstat) -> sha256
Digest = Callable[[str, str, os.stat_result], str]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyncedFile(_Model):
    path: str = Field(description="Where the file lives on the volume, relative to the root")
    size: int = Field(ge=0)
    sha256: str
    mode: int = Field(description="Permission bits (e.g. 0o755 for a console script)")
    mtime: int = Field(description="Modification time in seconds (timestamp-based .pyc files check it)")
    staged: bool = Field(
        default=False, description="Uploaded under pushed/<generation>/ and moved into place by sync apply"
    )

    @field_validator("path")
    @classmethod
    def _plain(cls, value: str) -> str:
        return safe_relative(value)


class SyncedLink(_Model):
    path: str = Field(description="The link, relative to the root")
    target: str = Field(description="What it points to, as readlink gives it (relative)")

    @field_validator("path")
    @classmethod
    def _plain(cls, value: str) -> str:
        return safe_relative(value)

    @field_validator("target")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or "\x00" in value:
            raise ValueError(f"link target {value!r} is absolute: it would leave the volume")
        return value


class GenerationManifest(StoreDocument):
    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = SCHEMA_VERSION
    project: str
    python_version: str
    generation: str
    created_at: datetime = Field(default_factory=utc_now)
    tool_version: str = __version__
    generation_record: str = Field(description="Path of the generation record (staged)")
    lock_files: list[str] = Field(description="Paths of lock.json, pylock.toml, uv.lock (staged)")
    state: str = Field(description="Path of the source's state.json (staged; apply takes its models record)")
    model_manifests: list[str] = Field(default_factory=list, description="Paths of the model manifests (staged)")
    entries: list[str] = Field(description="Store entries the generation links")
    files: list[SyncedFile]
    forest_links: list[SyncedLink] = Field(description="The generation folder's links, as build_forest makes them")
    links: list[SyncedLink] = Field(
        default_factory=list, description="Links inside store entries and models (snapshots)"
    )
    content_sha256: str = Field(default="", description="sha256 of every other field (canonical JSON)")

    def computed_checksum(self) -> str:
        return manifest_checksum(self.model_dump(mode="json"))

    def sealed(self) -> GenerationManifest:
        return self.model_copy(update={"content_sha256": self.computed_checksum()})

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.files)

    @property
    def documents(self) -> set[str]:
        """Staged files apply writes as documents; the other staged files (model files) it moves into place."""
        return {self.generation_record, self.state, *self.lock_files, *self.model_manifests}


def manifest_key(project: str, generation: str) -> str:
    return f"{pending_dir(project)}/{generation}.json"


def object_key(manifest: GenerationManifest, item: SyncedFile) -> str:
    """Where ``item`` is uploaded: its own path, or under the pending folder when apply moves it."""
    return staged_key({"project": manifest.project, "generation": manifest.generation}, item.model_dump())


def encode_manifest(manifest: GenerationManifest) -> bytes:
    return (manifest.sealed().model_dump_json(indent=1) + "\n").encode()


def decode_manifest(raw: bytes, *, source: str) -> GenerationManifest:
    """The manifest in ``raw``; SyncManifestError when it is torn, invalid or fails its checksum."""
    try:
        manifest = parse_document(raw, GenerationManifest, source=Path(source))
    except StateError as exc:
        raise SyncManifestError(
            f"pushed manifest {source} is unreadable ({exc.message}); it is refused",
            hint=f"remove {source}, then push the project again (volume-cli sync push --project P --to NAME)",
        ) from None
    if manifest.content_sha256 != manifest.computed_checksum():
        raise SyncManifestError(
            f"pushed manifest {source} fails its own checksum (torn or edited); it is refused",
            hint=f"remove {source}, then push again: volume-cli sync push --project {manifest.project} --to NAME",
        )
    return manifest


def _walk(
    layout: VolumeLayout, top: Path, files: dict[str, SyncedFile], links: dict[str, SyncedLink], digest: Digest
) -> None:
    """Regular files and links under ``top``, never following a link (one lstat each).

    Relative paths are joined as strings: a Path and a relpath per file cost more than hashing with the
    digest cache (18,937 files of the 44-wheel set).
    """
    top_relative = safe_relative(layout.relative(top))
    if top.is_symlink():
        links[top_relative] = SyncedLink(path=top_relative, target=os.readlink(top))
        return
    start = str(top)
    for folder, dirs, names in os.walk(start, followlinks=False):
        prefix = top_relative + folder[len(start) :].replace(os.sep, "/")
        for name in [*dirs, *names]:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            relative = f"{prefix}/{name}"
            if stat.S_ISLNK(info.st_mode):
                links[relative] = SyncedLink(path=relative, target=os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                files[relative] = _synced(path, relative, info, digest)


def _synced(path: str, relative: str, info: os.stat_result, digest: Digest, *, staged: bool = False) -> SyncedFile:
    # Not validated again: ``relative`` is a walk's top (checked) joined with names the file system gave, and
    # validating 18,937 of them cost as much as the walk. apply checks every path of a manifest it reads.
    return SyncedFile.model_construct(
        path=relative,
        size=info.st_size,
        sha256=digest(path, relative, info),
        mode=stat.S_IMODE(info.st_mode),
        mtime=int(info.st_mtime),
        staged=staged,
    )


def _staged(layout: VolumeLayout, path: Path, digest: Digest) -> SyncedFile:
    return _synced(str(path), layout.relative(path), path.stat(), digest, staged=True)


def hash_now(path: str, relative: str, info: os.stat_result) -> str:
    """The sha256 of a file, read now (``DigestCache.sha256`` reads only files that changed)."""
    from volume_cli.models.checksums import hash_file  # here: see _model_parts

    return hash_file(Path(path), "sha256", size=info.st_size)


def build_manifest(
    layout: VolumeLayout, project: str, python_version: str, *, digest: Digest = hash_now
) -> GenerationManifest:
    """The manifest of ``project``'s current generation on the volume at ``layout`` (``digest`` gives each sha256)."""
    generation = current_generation(layout, project, python_version)
    record = read_generation_record(layout, project, generation) if generation else None
    state = read_project_state(layout, project)
    if generation is None or record is None or state is None:
        raise SyncManifestError(
            f"{project} has no installed generation for Python {python_version} under {layout.root}",
            hint=f"volume-cli deps install --project {project} --root {layout.root}",
        )
    files: dict[str, SyncedFile] = {}
    entry_links: dict[str, SyncedLink] = {}
    for entry in record.entries:
        _walk(layout, layout.store_dir / entry.entry, files, entry_links, digest)
    forest: dict[str, SyncedLink] = {}
    _walk(layout, generation_dir(layout, project, python_version, generation), {}, forest, digest)
    model_files, model_links, model_manifests = _model_parts(
        layout, state.models.model_keys if state.models else [], digest
    )
    files.update(model_files)
    staged = [generation_record_path(layout, project, generation), project_state_path(layout, project)]
    locks = [lock_info_path(layout, project), pylock_path(layout, project), uv_lock_path(layout, project)]
    lock = read_lock_info(layout, project)
    # The lock files name the last resolve; after a rollback they may not be the current generation's own.
    locks = [path for path in locks if path.is_file()] if lock and lock.pylock_sha256 == record.lock_hash else []
    for path in [*staged, *locks, *model_manifests]:
        item = _staged(layout, path, digest)
        files[item.path] = item
    return GenerationManifest(
        project=project,
        python_version=python_version,
        generation=generation,
        created_at=record.created_at,  # not now: the same generation gives the same manifest, byte for byte
        generation_record=layout.relative(staged[0]),
        lock_files=[layout.relative(path) for path in locks],
        state=layout.relative(staged[1]),
        model_manifests=[layout.relative(path) for path in model_manifests],
        entries=[entry.entry for entry in record.entries],
        files=_upload_order(files),
        forest_links=sorted(forest.values(), key=lambda link: link.path),
        links=sorted({**entry_links, **model_links}.values(), key=lambda link: link.path),
    ).sealed()


def _model_parts(
    layout: VolumeLayout, keys: list[str], digest: Digest
) -> tuple[dict[str, SyncedFile], dict[str, SyncedLink], list[Path]]:
    # Here: importing volume_cli.models costs ~70 ms, which gc (pending_entries) would pay for nothing.
    from volume_cli.models.manifest import manifest_path, read_model_manifest

    files: dict[str, SyncedFile] = {}
    links: dict[str, SyncedLink] = {}
    manifests: list[Path] = []
    for key in keys:
        model = read_model_manifest(layout, key)
        if model is None:
            continue
        manifests.append(manifest_path(layout, key))
        for relative in dict.fromkeys([model.target, *model.links]):
            path = layout.absolute(safe_relative(relative))
            if path.is_symlink() or path.exists():
                _walk(layout, path, files, links, digest)
    # Only a hub's blobs are named by their content; any other model file (a ref, a URL or local model's file)
    # may be one old workers read, so it waits under pushed/ and apply moves it into place.
    staged = {path: item.model_copy(update={"staged": "/blobs/" not in path}) for path, item in files.items()}
    return staged, links, manifests


def _upload_order(files: dict[str, SyncedFile]) -> list[SyncedFile]:
    """Each store entry's marker after its other files: a marker on a volume means the entry is complete."""
    return sorted(files.values(), key=lambda item: (item.staged, item.path.endswith(f"/{ENTRY_MANIFEST}"), item.path))


def entry_of(path: str) -> str | None:
    """The store entry a path belongs to (``python-deps/.store/<entry>/...``), else None."""
    parts = path.split("/")
    return parts[2] if len(parts) > 3 and parts[:2] == ["python-deps", ".store"] else None


def pending_manifest_paths(layout: VolumeLayout, project: str) -> list[Path]:
    # Never listed through a planted link: gc and apply would act on what it names.
    folder = check_folder(layout.absolute(pending_dir(project)), layout.root)
    try:
        return sorted(
            Path(entry.path)
            for entry in os.scandir(folder)
            if entry.name.endswith(".json") and entry.is_file(follow_symlinks=False)
        )
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"{folder}: cannot list: {exc.strerror or exc}") from None


def read_pending(layout: VolumeLayout, project: str) -> list[GenerationManifest]:
    """The project's pending manifests on this volume, oldest first; a bad one raises SyncManifestError."""
    found = [decode_manifest(path.read_bytes(), source=str(path)) for path in pending_manifest_paths(layout, project)]
    return sorted(found, key=lambda manifest: (manifest.created_at, manifest.generation))


def pending_entries(layout: VolumeLayout, project: str) -> set[str]:
    """Store entries (base keys, as gc compares them) the project's pending manifests reference, for gc to spare.

    A refused (torn) manifest is never applied, so it protects nothing: a
    push that is still uploading has young entries, which gc's grace keeps.
    """
    entries: set[str] = set()
    for path in pending_manifest_paths(layout, project):
        try:
            entries.update(base_key(entry) for entry in decode_manifest(path.read_bytes(), source=str(path)).entries)
        except (SyncManifestError, OSError):
            continue
    return entries


def pending_note(root: Path, project: str) -> str | None:
    """doctor's line about pushed generations not applied yet (names only: a listing, no manifest read)."""
    names = [path.stem for path in pending_manifest_paths(VolumeLayout(root), project)]
    if not names:
        return None
    return f"pending  {', '.join(names)} pushed here, not applied yet (next: volume-cli sync apply --project {project})"


def installed_python(layout: VolumeLayout, project: str) -> str:
    """The Python version ``project`` is installed for under ``layout``: what a push reads its generation by."""
    from volume_cli.errors import SyncManifestError
    from volume_cli.store.state import read_project_state

    state = read_project_state(layout, project)
    if state is None:
        raise SyncManifestError(
            f"{project} is not installed under {layout.root}",
            hint=f"volume-cli deps install --project {project} --root {layout.root}",
        )
    return state.python_version
