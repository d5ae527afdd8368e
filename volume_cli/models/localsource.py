"""A file or folder from the pod or the project repo, copied (never moved) into ``models/<dest>``.

The copy is written to a hidden sibling of the destination and renamed into
place, so a worker sees the old copy or the new one, never half of one; the
sha256 of every file is computed while copying. A fingerprint of the source
(paths, sizes, mtimes) makes the next run a no-op until the source changes;
a worker that has no such source path keeps using the imported copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from volume_cli.config.model_sources import LocalModel
from volume_cli.errors import ModelError
from volume_cli.fileops import remove_tree, swap_into_place, unique_sibling
from volume_cli.fsguard import check_inside
from volume_cli.models.checksums import StreamHasher
from volume_cli.models.manifest import ManifestFile, ModelManifest, safe_key, spec_hash
from volume_cli.models.sources import SourceContext
from volume_cli.models.staging import staging_dir

_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class LocalSourceFile:
    relative: str
    path: Path
    size: int
    mtime_ns: int


def source_path(spec: LocalModel, project_folder: Path) -> Path:
    path = Path(spec.path).expanduser()
    return path if path.is_absolute() else project_folder / path


def scan_source(source: Path) -> list[LocalSourceFile] | None:
    """Files of the source (symlinks followed, as a copy would); None when it does not exist here."""
    if source.is_file():
        stat = source.stat()
        return [LocalSourceFile(source.name, source, stat.st_size, stat.st_mtime_ns)]
    if not source.is_dir():
        return None
    found = []
    for folder, dirs, files in os.walk(source, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            stat = path.stat()
            found.append(LocalSourceFile(path.relative_to(source).as_posix(), path, stat.st_size, stat.st_mtime_ns))
    return found


def fingerprint(files: list[LocalSourceFile]) -> str:
    digest = hashlib.sha256()
    for entry in files:
        digest.update(f"{entry.relative}\0{entry.size}\0{entry.mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _copy_hashing(source: Path, target: Path) -> tuple[str, int]:
    hasher = StreamHasher("sha256", 0)
    size = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            hasher.update(chunk)
            size += len(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    shutil.copystat(source, target)
    return hasher.hexdigest(), size


def import_local(context: SourceContext, spec: LocalModel, project_folder: Path) -> ModelManifest:
    source = source_path(spec, project_folder)
    files = scan_source(source)
    if files is None:
        raise ModelError(
            f"{spec.key}: local source {source} does not exist",
            hint="fix 'path' (relative paths are relative to the project folder)",
        )
    destination = check_inside(context.layout.models_dir / spec.dest, context.layout.models_dir)
    single = source.is_file()
    staged = unique_sibling(destination, "import")
    entries: list[ManifestFile] = []
    try:
        if not single:
            staged.mkdir(parents=True)
        for entry in files:
            target = staged if single else staged / entry.relative
            digest, size = _copy_hashing(entry.path, target)
            entries.append(ManifestFile(path=destination.name if single else entry.relative, size=size, sha256=digest))
        # The replaced copy waits in staging until the next import, for readers still in it.
        swap_into_place(staged, destination, keep_old=staging_dir(context.layout) / safe_key(spec.key) / "previous")
    except BaseException:
        remove_tree(staged, within=context.layout.models_dir)
        raise
    layout = context.layout
    return ModelManifest(
        key=spec.key,
        source="local",
        model_id=str(source),
        spec_hash=spec_hash(spec),
        target=layout.relative(destination),
        files_root=layout.relative(destination.parent if single else destination),
        source_fingerprint=fingerprint(files),
        files=entries,
        total_size=sum(entry.size for entry in entries),
        downloaded_at=context.now,
    )
