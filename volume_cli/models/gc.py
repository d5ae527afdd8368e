"""Removing models: explicitly (``remove``) or every one no project references (``gc``).

Only what a manifest says a model owns is removed (its folder or file and
the links we made), never other files under models/. A model another
process holds the lock of (being downloaded) is left alone.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Iterable, Mapping

from volume_cli.errors import LockHeldError, UnknownModelError, UnsafePathError
from volume_cli.fileops import remove_empty_parents, remove_tree, tree_bytes
from volume_cli.fsguard import check_inside, is_inside
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import ModelManifest, all_manifests, delete_manifest, model_lock_path, safe_key
from volume_cli.models.results import GcResult, RemovedModel
from volume_cli.models.staging import staging_dir
from volume_cli.progress import NullProgress, Progress
from volume_cli.store.lock import LeaseLock
from volume_cli.store.state import read_project_state


def gc(
    *, layout: VolumeLayout, referenced_keys: Collection[str], dry_run: bool = False, progress: Progress | None = None
) -> GcResult:
    """Remove every model on the volume whose key no project references (a shared model is one key)."""
    referenced = set(referenced_keys)
    manifests = all_manifests(layout)
    doomed = [manifest for manifest in manifests if manifest.key not in referenced]
    kept = tuple(sorted(manifest.key for manifest in manifests if manifest.key in referenced))
    result = _remove_all(layout, doomed, kept, dry_run, progress or NullProgress())
    if not dry_run:
        _remove_orphan_partials(layout, referenced)
    return result


def _remove_orphan_partials(layout: VolumeLayout, referenced: set[str]) -> None:
    """Partial downloads of models no project wants any more (a run killed before it finished)."""
    keep = {safe_key(key) for key in referenced}
    try:
        check_inside(staging_dir(layout) / "probe", layout.models_dir)  # a planted staging link is not emptied
        entries = list(staging_dir(layout).iterdir())
    except (FileNotFoundError, UnsafePathError):
        return
    for entry in entries:
        if entry.name.removesuffix(".part") not in keep:
            remove_tree(entry, within=layout.models_dir)


def remove(
    *, layout: VolumeLayout, keys: Iterable[str], dry_run: bool = False, progress: Progress | None = None
) -> GcResult:
    """Remove the named models; an unknown key raises before anything is removed (a typo must not pass as done)."""
    wanted = set(keys)
    present = all_manifests(layout)
    _check_known(wanted, {manifest.key for manifest in present})
    manifests = [manifest for manifest in present if manifest.key in wanted]
    return _remove_all(layout, manifests, (), dry_run, progress or NullProgress())


def _check_known(wanted: set[str], known: set[str]) -> None:
    unknown = sorted(wanted - known)
    if not unknown:
        return
    close = [match for key in unknown for match in difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)]
    hint = f"did you mean {', '.join(dict.fromkeys(close))}?" if close else "see the keys with: volume-cli models list"
    raise UnknownModelError(f"no model on the volume has the key {', '.join(unknown)}; nothing was removed", hint=hint)


def projects_declaring(
    layout: VolumeLayout, keys: Collection[str], *, declared: Mapping[str, Collection[str]]
) -> dict[str, list[str]]:
    """For each of ``keys``, the projects that still want it: ``declared`` (found here) plus the volume's records."""
    wanted = set(keys)
    by_key: dict[str, set[str]] = {}
    for project, project_keys in declared.items():
        for key in wanted.intersection(project_keys):
            by_key.setdefault(key, set()).add(project)
    for project in _recorded_projects(layout):
        if project in declared:
            continue  # what the project declares now wins over what it downloaded before
        state = read_project_state(layout, project)
        if state is not None and state.models is not None:
            for key in wanted.intersection(state.models.model_keys):
                by_key.setdefault(key, set()).add(project)
    return {key: sorted(projects) for key, projects in by_key.items()}


def _recorded_projects(layout: VolumeLayout) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(layout.projects_state_dir) if entry.is_dir())
    except FileNotFoundError:
        return []


def _remove_all(
    layout: VolumeLayout, manifests: list[ModelManifest], kept: tuple[str, ...], dry_run: bool, progress: Progress
) -> GcResult:
    removed = []
    for manifest in manifests:
        target = layout.absolute(manifest.target)
        if not is_inside(target, layout.models_dir):
            progress.warn(f"{manifest.key}: not removed, its folder {target} is outside {layout.models_dir}")
            continue
        if dry_run:
            removed.append(RemovedModel(manifest.key, tree_bytes(target), manifest.target))
            continue
        try:
            with LeaseLock(model_lock_path(layout, manifest.key), command=f"models remove {manifest.key}"):
                freed = _remove_model(layout, manifest)
        except (LockHeldError, UnsafePathError) as exc:
            progress.warn(f"{manifest.key}: not removed, {exc}")
            continue
        progress.info(f"removed {manifest.key}")
        removed.append(RemovedModel(manifest.key, freed, manifest.target))
    return GcResult(removed=tuple(removed), kept=kept, dry_run=dry_run)


def _remove_model(layout: VolumeLayout, manifest: ModelManifest) -> int:
    # Checked before anything is removed: a manifest naming a path outside (or a planted link) keeps its files.
    target = check_inside(layout.absolute(manifest.target), layout.models_dir)
    freed = tree_bytes(target)
    # The manifest goes first: a crash half-way leaves untracked files, never a manifest promising missing ones.
    delete_manifest(layout, manifest.key)
    for link in manifest.links:
        path = layout.absolute(link)
        if path.is_symlink() and is_inside(path, layout.models_dir):
            path.unlink()
            remove_empty_parents(path.parent, layout.models_dir)
    remove_tree(target, within=layout.models_dir)
    remove_empty_parents(target.parent, layout.models_dir)
    remove_tree(staging_dir(layout) / safe_key(manifest.key), within=layout.models_dir)
    remove_tree(staging_dir(layout) / f"{safe_key(manifest.key)}.part", within=layout.models_dir)
    return freed


def keys_recorded_on_volume(layout: VolumeLayout, *, exclude: Collection[str]) -> set[str]:
    """Model keys that the volume's project records (other than ``exclude``) say were downloaded."""
    keys: set[str] = set()
    try:
        names = [entry.name for entry in os.scandir(layout.projects_state_dir) if entry.is_dir()]
    except FileNotFoundError:
        return keys
    for name in names:
        if name in exclude:
            continue
        # An unreadable record raises: gc must not guess which models it protects.
        state = read_project_state(layout, name)
        if state is not None and state.models is not None:
            keys.update(state.models.model_keys)
    return keys
