"""Generations: symlink forests over store entries, switched by one rename.

A generation folder holds one relative symlink per top-level item of each
entry. A folder several entries provide (``nvidia/``, ``google/``, a shared
``__pycache__``) or that native code needs real (see ``store._real_dirs``)
becomes a real folder whose children link onward, recursively.
``pyX.Y/<project>`` is a relative symlink to the current generation, replaced
atomically, so a worker sees the whole old set or the whole new set.

A spare (``.spare-<format>-<generation>``) is a finished copy of a generation's
forest that no one serves. The next install renames it in as its new generation
folder and changes only the links that differ (``adopt_forest``), instead of
making every link again one after another in a folder the kernel locks for each
create; the install makes the next spare while uv runs. Spares live beside the
generations, are made under a temp name and renamed when complete, and go with
the generation they copy (``deps/gc.py``).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from volume_cli.deps.documents import EntryInfo, GenerationRecord, generation_record_path
from volume_cli.errors import InstallError
from volume_cli.fileops import remove_tree, temp_path_for
from volume_cli.fsguard import check_chain, check_folder, planted_link
from volume_cli.layout import VolumeLayout
from volume_cli.parallel import run_spread
from volume_cli.store.documents import write_document

TEMP_PREFIX = ".tmp-"
SPARE_PREFIX = ".spare-"
# Part of a spare's name: bumped whenever _plan_forest would make another forest from the same entries, so
# that a spare an older volume-cli made is never taken for this one's.
SPARE_FORMAT = "1"
_BUILDING_SPARE = "spare-"


def new_generation_name() -> str:
    return time.strftime("g%Y%m%dT%H%M%S", time.gmtime()) + f"-{uuid.uuid4().hex[:6]}"


@dataclass
class _Node:
    """A forest path: who provides it, and whether it must be a real folder."""

    providers: list[tuple[str, bool]]  # (entry, is_dir)
    real: bool = False


@dataclass(frozen=True)
class Forest:
    """What a forest is made of, decided before anything is made: folders (parents first) and links."""

    folders: list[Path]
    links: list[tuple[Path, str]]  # (link, relative target)
    # What planning it listed in the store: (entry, path) -> children (name, is a folder). Entries are
    # immutable, so completing the forest lists only the folders of the entries it adds.
    listed: dict[tuple[str, str], list[tuple[str, bool]]] = field(default_factory=dict)


def build_forest(layout: VolumeLayout, folder: Path, entries: list[EntryInfo]) -> int:
    """Fill the empty ``folder`` with links to ``entries``; returns the number of links made.

    The few real folders are made first, then every link at once, spread
    across folders (``volume_cli/parallel.py``).
    """
    return len(start_forest(layout, folder, entries).links)


def start_forest(layout: VolumeLayout, folder: Path, entries: list[EntryInfo]) -> Forest:
    """``build_forest`` returning what it made, for ``complete_forest`` to add more entries to later."""
    check_folder(folder, layout.root)
    forest = _plan_forest(layout, folder, entries, listed={})
    _make(folder, forest, made=Forest(folders=[], links=[]))
    return forest


def complete_forest(
    layout: VolumeLayout, folder: Path, entries: list[EntryInfo], *, made: Forest, repaired: Collection[str] = ()
) -> Forest:
    """Bring ``folder``, where ``build_forest`` already made ``made`` (part of ``entries``), to all of ``entries``.

    Only the difference is made: an install links the unchanged entries while
    uv installs the changed ones, then adds theirs. A link the new entries turn
    into a real folder (a namespace both provide) is replaced; in the rare case
    a folder made early is not in the full forest, the folder is built again.
    ``folder`` was checked by ``start_forest`` and is ours: the caller holds the project's lock.
    Entries ``repaired`` in place since (``--force``) have their folders listed again.
    Returns the forest of ``entries``, which ``folder`` now holds.
    """
    listed = {key: children for key, children in made.listed.items() if key[0] not in repaired}
    forest = _plan_forest(layout, folder, entries, listed=listed)
    if not set(made.folders) <= set(forest.folders):
        for child in os.listdir(folder):
            remove_tree(folder / child)
        _make(folder, forest, made=Forest(folders=[], links=[]))
        return forest
    wanted = set(forest.links)
    stale = [link for link in made.links if link not in wanted]
    for link, _ in stale:
        os.unlink(link)
    _make(folder, forest, made=Forest(folders=made.folders, links=[link for link in made.links if link in wanted]))
    return forest


def adopt_forest(layout: VolumeLayout, folder: Path, entries: list[EntryInfo]) -> Forest | None:
    """What ``folder`` (a spare renamed in) holds, as ``start_forest`` returns it, when it is the forest of ``entries``.

    None when any forest folder holds another set of names or is a link: the
    caller then builds the forest anew. Each forest folder is listed once (all at
    once); names only, since a listing without types (some network file systems)
    would cost a stat per name. Link targets are not read back (a round trip
    each): a spare is only made by ``start_forest`` from the same entries, under a
    name that changes with ``SPARE_FORMAT``, and the store entries it points into
    never change. The names are checked because an entry repaired in place
    (``--force``) may now hold files the spare was made without.
    """
    forest = _plan_forest(layout, folder, entries, listed={})
    expected: dict[Path, set[str]] = {folder: set(), **{path: set() for path in forest.folders}}
    for path in forest.folders:
        expected[path.parent].add(path.name)
    for link, _ in forest.links:
        expected[link.parent].add(link.name)
    found: dict[Path, set[str]] = {}

    def read(path: Path) -> None:
        handle = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)  # a link fails here
        try:
            found[path] = set(os.listdir(handle))
        finally:
            os.close(handle)

    try:
        run_spread(((str(path), path) for path in expected), read)
    except OSError:
        return None
    return forest if found == expected else None


def _plan_forest(
    layout: VolumeLayout,
    folder: Path,
    entries: list[EntryInfo],
    *,
    listed: dict[tuple[str, str], list[tuple[str, bool]]],
) -> Forest:
    """What the forest of ``entries`` in ``folder`` is made of: its real folders (parents first) and links.

    ``listed`` holds store folders listed before (``Forest.listed``); it gains those listed now.
    """
    real_paths = {path for entry in entries for path in entry.real_dirs}
    top: dict[str, _Node] = {}
    # Sorted so a clash of plain files (two wheels shipping one README) resolves the same way every time.
    for entry in sorted(entries, key=lambda e: e.entry):
        for item in entry.top_level:
            node = top.setdefault(item.name, _Node(providers=[]))
            node.providers.append((entry.entry, item.is_dir))
    forest = Forest(folders=[], links=[], listed=listed)
    _plan(layout, folder, "", top, real_paths, forest)
    return forest


def _make(folder: Path, forest: Forest, *, made: Forest) -> None:
    """Make what ``forest`` has and ``made`` has not: folders first, then the links, spread across folders."""
    existing = set(made.folders)
    done = set(made.links)
    todo = [link for link in forest.links if link not in done]
    # A handle per folder that gets something (and its parents): a link made through it looks up one
    # name, not the whole path. Opening the others would cost a round trip each, one after another.
    wanted = {link.parent for link, _ in todo} | {path for path in forest.folders if path not in existing}
    if not wanted:
        return  # a spare already the forest wanted: not even the folder is opened
    for path in list(wanted):
        wanted.update(path.parents)
    handles = {folder: os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)}
    try:
        for path in forest.folders:
            if path not in wanted:
                continue
            parent = handles[path.parent]
            if path not in existing:
                os.mkdir(path.name, dir_fd=parent)
            handles[path] = os.open(path.name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)

        def make_link(item: tuple[Path, str]) -> None:
            os.symlink(item[1], item[0].name, dir_fd=handles[item[0].parent])

        run_spread(((str(link.parent), (link, target)) for link, target in todo), make_link)
    finally:
        for handle in handles.values():
            os.close(handle)


def _plan(
    layout: VolumeLayout, folder: Path, prefix: str, nodes: dict[str, _Node], real_paths: set[str], forest: Forest
) -> None:
    """Real folders and links, a level at a time: a level's store folders are listed at once, not one by one."""
    level = [(folder, prefix, nodes)]
    while level:
        real: list[tuple[Path, str, list[str]]] = []  # (forest folder, path in the entries, entries providing it)
        for base, parent_path, children in level:
            for name, node in sorted(children.items()):
                path = f"{parent_path}{name}"
                dirs = [entry for entry, is_dir in node.providers if is_dir]
                if len(dirs) > 1 or (dirs and path in real_paths):
                    forest.folders.append(base / name)
                    real.append((base / name, path, dirs))
                    continue
                entry = dirs[0] if dirs else node.providers[0][0]
                link = base / name
                forest.links.append((link, os.path.relpath(layout.store_dir / entry / path, link.parent)))
        _list(layout, forest.listed, [(entry, path) for _, path, dirs in real for entry in dirs])
        level = [(real_folder, f"{path}/", _children(forest.listed, path, dirs)) for real_folder, path, dirs in real]


def _list(
    layout: VolumeLayout, listed: dict[tuple[str, str], list[tuple[str, bool]]], wanted: list[tuple[str, str]]
) -> None:
    """Add the children of each (entry, path) not ``listed`` yet, listed at once (a round trip each on a volume)."""

    def read(key: tuple[str, str]) -> None:
        with os.scandir(layout.store_dir / key[0] / key[1]) as found:
            listed[key] = [(child.name, child.is_dir(follow_symlinks=False)) for child in found]

    run_spread(
        ((f"{entry}/{path}", (entry, path)) for entry, path in dict.fromkeys(wanted) if (entry, path) not in listed),
        read,
    )


def _children(listed: dict[tuple[str, str], list[tuple[str, bool]]], path: str, dirs: list[str]) -> dict[str, _Node]:
    children: dict[str, _Node] = {}
    for entry in dirs:
        for name, is_dir in listed[entry, path]:
            children.setdefault(name, _Node(providers=[])).providers.append((entry, is_dir))
    return children


def temp_generation_dir(layout: VolumeLayout, project: str, python_version: str, generation: str) -> Path:
    return layout.generations_dir(project, python_version) / f"{TEMP_PREFIX}{generation}"


def generation_dir(layout: VolumeLayout, project: str, python_version: str, generation: str) -> Path:
    return layout.generations_dir(project, python_version) / generation


def spare_dir(layout: VolumeLayout, project: str, python_version: str, source: str) -> Path:
    """Where the spare copy of generation ``source``'s forest is kept."""
    return layout.generations_dir(project, python_version) / f"{SPARE_PREFIX}{SPARE_FORMAT}-{source}"


def building_spare_dir(layout: VolumeLayout, project: str, python_version: str, generation: str) -> Path:
    """Where the install making ``generation`` builds the next spare (a temp folder: a killed run's is cleaned up)."""
    return layout.generations_dir(project, python_version) / f"{TEMP_PREFIX}{_BUILDING_SPARE}{generation}"


def spare_source(name: str) -> str | None:
    """The generation a spare folder named ``name`` copies; None when it is no spare of this format."""
    prefix = f"{SPARE_PREFIX}{SPARE_FORMAT}-"
    return name[len(prefix) :] or None if name.startswith(prefix) else None


def building_generation(name: str) -> str:
    """The generation whose install owns the temp folder ``name`` (its own forest, or the spare it builds)."""
    return name.removeprefix(TEMP_PREFIX).removeprefix(_BUILDING_SPARE)


def current_generation(layout: VolumeLayout, project: str, python_version: str) -> str | None:
    """The generation ``pyX.Y/<project>`` points at (one readlink), or None."""
    link = layout.deps_path(project, python_version)
    try:
        target = os.readlink(link)
    except (FileNotFoundError, OSError):
        return None
    return Path(target).name or None


def switch_current(layout: VolumeLayout, project: str, python_version: str, generation: str) -> str | None:
    """Point ``pyX.Y/<project>`` at ``generation`` with one atomic rename.

    Returns the name a plain folder left there by an older tool was kept
    under, so the caller records it as the previous generation; else None.
    """
    link = check_chain(layout.deps_path(project, python_version), layout.root)
    target = generation_dir(layout, project, python_version, generation)
    if os.path.islink(check_chain(target, layout.root)):
        raise planted_link(target, link)
    if not target.is_dir():
        raise InstallError(f"generation {generation} of {project} is missing on the volume")
    temp = temp_path_for(link)
    os.symlink(os.path.relpath(target, link.parent), temp)
    legacy: str | None = None
    try:
        if link.is_dir() and not link.is_symlink():
            legacy = _keep_legacy_folder(layout, project, python_version, link)
        os.replace(temp, link)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return legacy


def _keep_legacy_folder(layout: VolumeLayout, project: str, python_version: str, link: Path) -> str:
    """Keep a plain folder from an older volume-cli as a generation, so nothing is lost and rollback reaches it.

    Its record goes first: gc then treats it as a generation (kept while it
    is the previous one) instead of an unrecorded leftover.
    """
    name = f"legacy-{new_generation_name()}"
    legacy = generation_dir(layout, project, python_version, name)
    record = GenerationRecord(
        generation=name,
        project=project,
        python_version=python_version,
        path=layout.relative(legacy),
        config_hash="legacy",
        lock_hash="legacy",
        tool_version="unknown",
        entries=[],
    )
    write_document(generation_record_path(layout, project, name), record)
    legacy.parent.mkdir(parents=True, exist_ok=True)
    os.rename(link, legacy)
    return name
