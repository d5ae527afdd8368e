"""``sync apply``: turn a pushed generation into the volume's current one, with a local install's guarantees.

Run by something that sees the mounted volume (a pod), under the project's
writer lock: check every file the manifest lists is there (sizes; sha256
with ``deep``), restore modes and mtimes, make the models' links, place the
lock and model documents, build the forest with ``build_forest`` under a
temporary name, record it, rename it, switch ``pyX.Y/<project>`` with one
rename and record the switch (``record_switch``), exactly like ``deps
install``. The old generation serves until the switch, ``deps rollback``
reaches it afterwards, and an intent record keeps gc off the entries while
the forest is built. A second apply waits for the lock and then finds
nothing pending, so two at once build one generation. Killed anywhere, the
next apply converges: the pending manifest is removed only after the switch
is recorded.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from volume_cli.deps.documents import GenerationRecord, generation_record_path
from volume_cli.deps.entries import base_key, remove_tree
from volume_cli.deps.faults import crash_point
from volume_cli.deps.forest import (
    build_forest,
    current_generation,
    generation_dir,
    switch_current,
    temp_generation_dir,
)
from volume_cli.deps.record import clear_intent, record_intent, record_switch, repair_state
from volume_cli.errors import StateError, SyncIncompleteError, SyncManifestError
from volume_cli.fileops import atomic_write_bytes, temp_path_for
from volume_cli.fsguard import check_chain, guard_volume
from volume_cli.layout import VolumeLayout
from volume_cli.models.checksums import hash_file
from volume_cli.progress import Progress
from volume_cli.store.documents import parse_document, write_document
from volume_cli.store.lock import LeaseLock
from volume_cli.store.state import ProjectState, update_project_state
from volume_cli.store.writer_locks import project_lock
from volume_cli.sync.manifest import (
    GenerationManifest,
    SyncedLink,
    link_stays_inside,
    object_key,
    pending_dir,
    read_pending,
)


@dataclass(frozen=True)
class ApplyResult:
    project: str
    generation: str | None  # None: nothing was pending
    previous_generation: str | None
    switched: bool  # False when the pending generation was current already (a killed apply's)
    files_checked: int
    deep: bool
    modes_restored: int
    links_made: int
    forest_links: int
    superseded: tuple[str, ...]  # older pending generations dropped unapplied
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_pending(
    *, layout: VolumeLayout, project: str, deep: bool, wait_seconds: float, progress: Progress
) -> ApplyResult:
    """Apply the newest pending generation of ``project``; a refused manifest raises before anything changes."""
    started = time.monotonic()
    with project_lock(layout, project, command="sync apply", wait_seconds=wait_seconds, progress=progress) as lease:
        pending = read_pending(layout, project)  # under the lock: a concurrent apply may have just finished
        if not pending:
            return ApplyResult(project, None, None, False, 0, deep, 0, 0, 0, (), time.monotonic() - started)
        manifest = pending[-1]
        python_version = manifest.python_version
        guard_volume(layout, project=project, python_version=python_version)
        clear_intent(layout, project)  # we hold the lock: an intent left here is a killed run's
        repair_state(layout, project, python_version)
        current = current_generation(layout, project, python_version)
        counts = (0, 0, 0, 0)
        if current != manifest.generation:
            counts = _switch_to(layout, manifest, lease, current, deep=deep, progress=progress)
        _adopt_models(layout, manifest)
        from volume_cli.consumer_env import write_boot

        write_boot(layout, project, python_version)
        _finish(layout, pending)
    return ApplyResult(
        project=project,
        generation=manifest.generation,
        previous_generation=current if current != manifest.generation else None,
        switched=current != manifest.generation,
        files_checked=counts[0],
        deep=deep,
        modes_restored=counts[1],
        links_made=counts[2],
        forest_links=counts[3],
        superseded=tuple(item.generation for item in pending[:-1]),
        seconds=time.monotonic() - started,
    )


def _switch_to(
    layout: VolumeLayout,
    manifest: GenerationManifest,
    lease: LeaseLock,
    current: str | None,
    *,
    deep: bool,
    progress: Progress,
) -> tuple[int, int, int, int]:
    project, python_version = manifest.project, manifest.python_version
    progress.step(f"checking {len(manifest.files)} files of {manifest.generation}" + (" (sha256)" if deep else ""))
    _check_files(layout, manifest, deep=deep)
    record = _staged_document(layout, manifest, manifest.generation_record, GenerationRecord)
    if (record.generation, record.project, record.python_version) != (manifest.generation, project, python_version):
        raise SyncManifestError(f"the pushed generation record of {project} does not match its manifest")
    record_intent(
        layout,
        project=project,
        python_version=python_version,
        generation=manifest.generation,
        entries=[base_key(entry) for entry in manifest.entries],
    )
    _place_model_files(layout, manifest)
    restored = _restore_files(layout, manifest)
    links = sum(_make_link(layout, link) for link in manifest.links)
    forest = _build_generation(layout, manifest, record, progress)
    crash_point("sync-forest-built")
    # Last before the switch: a refused forest leaves the volume's lock and model records as they were.
    for relative in [*manifest.lock_files, *manifest.model_manifests]:
        target = layout.absolute(relative)
        atomic_write_bytes(
            check_chain(target, layout.root), layout.absolute(_staged_key(manifest, relative)).read_bytes()
        )
    lease.ensure_held()
    switch_current(layout, project, python_version, manifest.generation)
    crash_point("sync-switched")
    record_switch(layout, project, python_version, record, previous=current, new_bytes=0)
    clear_intent(layout, project)
    return len(manifest.files), restored, links, forest


def _adopt_models(layout: VolumeLayout, manifest: GenerationManifest) -> None:
    """The source's models record: every model the manifest carried is present and checked."""
    source = _staged_document(layout, manifest, manifest.state, ProjectState)
    if source.models is None:
        return
    update_project_state(
        layout,
        manifest.project,
        manifest.python_version,
        lambda state: state if state.models == source.models else state.model_copy(update={"models": source.models}),
    )


def _staged_key(manifest: GenerationManifest, relative: str) -> str:
    item = next(item for item in manifest.files if item.path == relative)
    return object_key(manifest, item)


def _staged_document(layout: VolumeLayout, manifest: GenerationManifest, relative: str, cls: type[Any]) -> Any:
    path = layout.absolute(_staged_key(manifest, relative))
    try:
        return parse_document(path.read_bytes(), cls, source=path)
    except StateError as exc:
        raise SyncManifestError(f"pushed document {path} is unreadable: {exc.message}") from None


def _check_files(layout: VolumeLayout, manifest: GenerationManifest, *, deep: bool) -> None:
    """Every listed file is a regular file of its size (and hash); else nothing changes and the push must finish."""
    bad: list[str] = []
    known: set[Path] = set()
    documents = manifest.documents
    for item in manifest.files:
        path = check_chain(layout.absolute(object_key(manifest, item)), layout.root, known=known)
        if item.staged and item.path not in documents and not path.exists():
            path = check_chain(layout.absolute(item.path), layout.root, known=known)  # moved by a killed apply
        try:
            info = path.lstat()
        except FileNotFoundError:
            bad.append(f"{item.path} (missing)")
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_size != item.size:
            bad.append(f"{item.path} ({info.st_size} bytes, expected {item.size})")
        elif deep and hash_file(path, "sha256", size=item.size) != item.sha256:
            bad.append(f"{item.path} (sha256 differs)")
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise SyncIncompleteError(
            f"generation {manifest.generation} of {manifest.project} is incomplete on this volume: "
            f"{', '.join(bad[:3])}{more}; the current generation was kept",
            hint=f"run the push again (it uploads only what is missing): volume-cli sync push --project {manifest.project}",
        )


def _restore_files(layout: VolumeLayout, manifest: GenerationManifest) -> int:
    """Modes and mtimes S3 dropped (an executable bit, the mtime a timestamp .pyc checks); returns files changed."""
    changed = 0
    documents = manifest.documents
    for item in manifest.files:
        if item.path in documents:
            continue
        path = layout.absolute(item.path)  # checked by _check_files: no link above it, a regular file itself
        info = path.lstat()
        if stat.S_IMODE(info.st_mode) != item.mode:
            os.chmod(path, item.mode)
            changed += 1
        if int(info.st_mtime) != item.mtime:
            os.utime(path, (item.mtime, item.mtime))
    return changed


def _place_model_files(layout: VolumeLayout, manifest: GenerationManifest) -> None:
    """Staged model files (refs, URL and local models' files) renamed into place: one rename each, same volume."""
    documents = manifest.documents
    for item in manifest.files:
        if not item.staged or item.path in documents:
            continue
        staged = layout.absolute(object_key(manifest, item))
        if not staged.exists():
            continue  # moved by a killed apply (_check_files found it in place)
        target = check_chain(layout.absolute(item.path), layout.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)


def _make_link(layout: VolumeLayout, link: SyncedLink) -> int:
    """One link of a store entry or model (1 when made); never one that would point out of the volume."""
    if not link_stays_inside(link):
        raise SyncManifestError(f"the manifest's link {link.path} -> {link.target} leaves the volume; refused")
    path = check_chain(layout.absolute(link.path), layout.root)
    if path.is_symlink() and os.readlink(path) == link.target:
        return 0
    if path.is_dir() and not path.is_symlink():
        raise SyncManifestError(f"{path} is a folder where the pushed generation has a link; refused")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(path)
    os.symlink(link.target, temp)
    os.replace(temp, path)
    return 1


def _build_generation(
    layout: VolumeLayout, manifest: GenerationManifest, record: GenerationRecord, progress: Progress
) -> int:
    """The forest under a temporary name, its record, then the rename into place (a killed run's is reused)."""
    project, python_version, generation = manifest.project, manifest.python_version, manifest.generation
    final = generation_dir(layout, project, python_version, generation)
    if final.is_dir() and not final.is_symlink():
        return len(manifest.forest_links)  # renamed into place by a killed apply: complete
    building = temp_generation_dir(layout, project, python_version, generation)
    if building.exists():
        remove_tree(building)
    building.mkdir(parents=True)
    progress.step(f"linking {len(record.entries)} distributions")
    links = build_forest(layout, building, record.entries)
    if links != len(manifest.forest_links):
        remove_tree(building)
        raise SyncManifestError(
            f"the forest built here has {links} links, the pushed one {len(manifest.forest_links)}; the current "
            "generation was kept",
            hint="push again from a volume where `volume-cli deps check` passes",
        )
    write_document(generation_record_path(layout, project, generation), record)
    os.rename(building, final)
    return links


def _finish(layout: VolumeLayout, pending: list[GenerationManifest]) -> None:
    """Drop the applied manifest and the older ones read with it, then their staged documents.

    A manifest pushed while we applied is not in ``pending`` and stays for the next apply.
    """
    folder = layout.absolute(pending_dir(pending[-1].project))
    for manifest in pending:
        check_chain(folder / f"{manifest.generation}.json", layout.root).unlink(missing_ok=True)
    for manifest in pending:
        staged = folder / manifest.generation
        if staged.is_dir() and not staged.is_symlink():
            remove_tree(staged)
