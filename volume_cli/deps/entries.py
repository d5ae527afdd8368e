"""Distribution entries: one immutable folder per (distribution, build, Python) in the store.

``<root>/python-deps/.store/<name>-<version>-<hash12>-pyX.Y/`` holds one
installed distribution laid out like site-packages, plus a manifest. Entries
are sorted out of uv's install in a staging folder on the pod's local disk
(``deps/scratch.py``), copied whole into this run's staging folder on the
volume (``deps/publish.py``) and appear in the store with one rename, so an
entry in the store is always complete; two installers racing for one entry
both build it, the first rename wins and the loser discards its copy. A
staging folder left by a killed installer is recognised by its name (host,
pid, process tag) and removed by the next run.

On local disk renames cost nothing, so a folder whose files all belong to
one distribution moves into its entry with one rename; only folders shared
by several distributions (a top-level ``__pycache__``, ``bin``, namespace
packages) are split.
"""

from __future__ import annotations

import csv
import errno
import os
import posixpath
import socket
import stat
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from volume_cli.deps.bytecode import compile_entries
from volume_cli.deps.dist_info import read_metadata_fields, read_record, record_digest, record_problems
from volume_cli.deps.documents import ENTRY_MANIFEST, EntryInfo, EntryManifest, LockedPackage, TopItem
from volume_cli.deps.elf import search_paths
from volume_cli.deps.faults import crash_point
from volume_cli.deps.publish import Publisher, copy_file, process_umask
from volume_cli.errors import InstallError, StateError
from volume_cli.fileops import TRASH_PREFIX, discard_tree
from volume_cli.fileops import remove_tree as remove_tree
from volume_cli.fsguard import check_folder, check_inside, planted_link
from volume_cli.layout import VolumeLayout
from volume_cli.local_copy import PACKS, is_shared_library
from volume_cli.store.documents import read_document, write_document
from volume_cli.store.lock import process_tag, tagged_process_gone

STALE_STAGING_SECONDS = 6 * 3600.0
FORCED_MARKER = "-f"


def entry_key(package: LockedPackage, python_version: str, *, forced: bool = False) -> str:
    key = f"{package.name}-{package.version}-{package.artifact_hash[:12]}-py{python_version}"
    return f"{key}{FORCED_MARKER}{uuid.uuid4().hex[:8]}" if forced else key


def base_key(entry: str) -> str:
    """The entry key without the suffix a forced rebuild adds."""
    head, marker, tail = entry.rpartition(FORCED_MARKER)
    if marker and len(tail) == 8 and all(c in "0123456789abcdef" for c in tail) and "-py" in head:
        return head
    return entry


def read_entry_manifest(layout: VolumeLayout, entry: str) -> EntryManifest | None:
    if os.path.islink(layout.store_dir / entry):  # a planted entry: linking or repairing it would reach outside
        raise planted_link(layout.store_dir / entry, layout.store_dir / entry)
    return read_document(layout.store_dir / entry / ENTRY_MANIFEST, EntryManifest)


# -- staging ------------------------------------------------------------------------
def staging_parent(layout: VolumeLayout) -> Path:
    return layout.deps_dir / ".staging"


@dataclass(frozen=True)
class Staging:
    root: Path
    # The volume is on the staging folder's disk (a local volume): entries are moved with renames, not copied.
    same_disk_as_volume: bool = False

    @property
    def target(self) -> Path:
        return self.root / "target"

    @property
    def entries(self) -> Path:
        return self.root / "entries"


def staging_name() -> str:
    """A staging folder's name: host, pid, a random part and the process tag (``staging_is_stale`` reads it)."""
    host = socket.gethostname().replace("-", "_")
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{process_tag()}"


def new_staging(layout: VolumeLayout) -> Staging:
    """This run's staging folder on the volume: entries are published into it, then renamed into the store."""
    staging = Staging(check_folder(staging_parent(layout), layout.root) / staging_name())
    staging.root.mkdir(parents=True)
    return staging


def staging_is_stale(name: str, *, age_seconds: float, max_age_seconds: float) -> bool:
    """A staging folder of a dead process on this machine, or one too old to belong to a live install.

    A hostname and pid alone prove nothing: a pod with the same hostname in another PID namespace
    may be installing into it; only the process tag (machine, namespace, start time) can."""
    host, _, rest = name.partition("-")
    pid_text, _, tail = rest.partition("-")
    tag = tail.partition("-")[2]
    ours = host == socket.gethostname().replace("-", "_") and pid_text.isdigit()
    if ours and int(pid_text) != os.getpid() and tagged_process_gone(int(pid_text), tag):
        return True
    return age_seconds > max_age_seconds


def cleanup_stale_staging(layout: VolumeLayout, *, max_age_seconds: float = STALE_STAGING_SECONDS) -> int:
    parent = check_folder(staging_parent(layout), layout.root)
    return remove_stale_stagings(parent, max_age_seconds=max_age_seconds, with_trash=True)


def remove_stale_stagings(parent: Path, *, max_age_seconds: float, with_trash: bool = False) -> int:
    """Remove the staging folders in ``parent`` of killed runs (and set-aside ones, ``with_trash``); how many."""
    try:
        children = list(os.scandir(parent))
    except FileNotFoundError:
        return 0
    removed = 0
    now = time.time()
    for child in children:
        try:
            age = now - child.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if (with_trash and child.name.startswith(TRASH_PREFIX)) or staging_is_stale(
            child.name, age_seconds=age, max_age_seconds=max_age_seconds
        ):
            if child.is_symlink():
                os.unlink(child.path)  # removed as a link, never followed
            else:
                discard_tree(child.path)
            removed += 1
    return removed


# -- harvesting a staged install into entries --------------------------------------------
@dataclass
class _Staged:
    name: str
    version: str
    dist_info: str
    files: dict[str, int] = field(default_factory=dict)  # path -> size from RECORD
    digests: dict[str, str] = field(default_factory=dict)  # path -> RECORD hash


def _staged_distributions(target: Path) -> dict[str, _Staged]:
    staged: dict[str, _Staged] = {}
    for child in os.scandir(target):
        if not child.name.endswith(".dist-info") or not child.is_dir(follow_symlinks=False):
            continue
        folder = Path(child.path)
        fields = read_metadata_fields(folder / "METADATA")
        name = canonicalize_name(fields.get("Name", child.name.split("-", 1)[0]))
        dist = _Staged(name=name, version=fields.get("Version", ""), dist_info=child.name)
        for path, digest, size in read_record(folder / "RECORD"):
            normal = posixpath.normpath(path)
            if normal.startswith(("../", "/")) or normal == "..":
                continue  # outside the target: nothing of ours
            dist.files[normal] = int(size) if size.isdigit() else 0
            dist.digests[normal] = digest
        staged[name] = dist
    return staged


def _holds(target: Path, path: str, dist: _Staged) -> bool:
    try:
        return record_digest(target / path) == dist.digests.get(path)
    except OSError:
        return False


class _Ownership:
    """Which distribution owns each staged path, from the RECORDs.

    Bytecode is not in RECORD; a ``__pycache__/x.cpython-310.pyc`` belongs to
    whoever owns ``x.py`` next to the ``__pycache__``. A path two wheels ship
    holds the bytes of the one uv wrote last: it goes to the distribution whose
    RECORD hash it matches, never into the other's entry as damage.
    """

    def __init__(self, staged: Iterable[_Staged], target: Path | None = None) -> None:
        self.file_owner: dict[str, str] = {}
        self.dir_owners: dict[str, set[str]] = {}
        for dist in staged:
            for path in dist.files:
                previous = self.file_owner.get(path)
                if previous is not None and target is not None:
                    self.file_owner[path] = dist.name if _holds(target, path, dist) else previous
                else:
                    self.file_owner[path] = dist.name
                parent = posixpath.dirname(path)
                self._own_dirs(parent, dist.name)
                if path.endswith(".py"):
                    self._own_dirs(posixpath.join(parent, "__pycache__"), dist.name)

    def _own_dirs(self, folder: str, owner: str) -> None:
        while folder:
            self.dir_owners.setdefault(folder, set()).add(owner)
            folder = posixpath.dirname(folder)

    def owner_of_file(self, path: str) -> str | None:
        owner = self.file_owner.get(path)
        if owner is not None:
            return owner
        parent = posixpath.dirname(path)
        if posixpath.basename(parent) == "__pycache__":
            stem = posixpath.basename(path).split(".", 1)[0]
            return self.file_owner.get(posixpath.join(posixpath.dirname(parent), f"{stem}.py"))
        return None


@dataclass
class _EntryBuild:
    key: str
    folder: Path
    moved: list[tuple[str, bool]] = field(default_factory=list)  # (path, is_dir)
    made_dirs: set[str] = field(default_factory=set)

    def destination(self, path: str) -> Path:
        parent = posixpath.dirname(path)
        if parent and parent not in self.made_dirs:
            (self.folder / parent).mkdir(parents=True, exist_ok=True)
            while parent:
                self.made_dirs.add(parent)
                parent = posixpath.dirname(parent)
        return self.folder / path


def _distribute(target: Path, ownership: _Ownership, builds: dict[str, _EntryBuild], folder: str = "") -> None:
    for child in os.scandir(target / folder if folder else target):
        path = posixpath.join(folder, child.name) if folder else child.name
        if child.is_dir(follow_symlinks=False):
            owners = ownership.dir_owners.get(path, set())
            if len(owners) == 1:
                build = builds.get(next(iter(owners)))
                if build is not None:
                    os.rename(child.path, build.destination(path))
                    build.moved.append((path, True))
            elif len(owners) > 1:
                _distribute(target, ownership, builds, path)
            continue
        owner = ownership.owner_of_file(path)
        build = builds.get(owner) if owner else None
        if build is not None:
            os.rename(child.path, build.destination(path))
            build.moved.append((path, False))


def _real_dirs(build: _EntryBuild, dist: _Staged) -> list[str]:
    return _origin_real_dirs(dist.files, lambda path: search_paths(build.folder / path))


def _origin_targets(path: str, searches: list[str]) -> list[str]:
    """The folders (relative to site-packages) the ``$ORIGIN`` entries of ``path`` point at."""
    folder = posixpath.dirname(path)
    targets: list[str] = []
    for entry in searches:
        if "$ORIGIN" not in entry and "${ORIGIN}" not in entry:
            continue
        relative = entry.replace("${ORIGIN}", "$ORIGIN").replace("$ORIGIN", folder or ".", 1)
        resolved = posixpath.normpath(relative)
        if not resolved.startswith(".."):  # above site-packages: no forest can help
            targets.append("" if resolved == "." else resolved)
    return targets


def _climbs_out(folder: str, target: str) -> bool:
    return folder != "" and not (target == folder or target.startswith(folder + "/"))


def _origin_real_dirs(files: Iterable[str], search: Callable[[str], list[str]]) -> list[str]:
    """Folders that must be real directories in a forest for this entry's native code to load.

    glibc expands ``$ORIGIN`` from the path a library was opened by, and the
    kernel resolves ``..`` physically, so ``$ORIGIN/../../nvidia/...`` from a
    symlinked ``torch/`` would climb into the store entry instead of the
    forest. A library whose search path leaves its own entry needs every
    folder above it real. So does one whose path climbs out of its folder
    into a folder of its own entry whose libraries need the forest in turn
    (``functorch/_C.so`` → ``$ORIGIN/../torch/lib`` → ``../../nvidia``): the
    path it opens them by must not pass through a link. A climb into
    self-contained libraries (auditwheel's ``$ORIGIN/../numpy.libs``) works
    through links and costs no extra links.
    """
    own = set(files)
    own_dirs: set[str] = set()
    for path in own:
        folder = posixpath.dirname(path)
        while folder and folder not in own_dirs:
            own_dirs.add(folder)
            folder = posixpath.dirname(folder)
    targets = {
        path: _origin_targets(path, search(path)) for path in sorted(own) if is_shared_library(posixpath.basename(path))
    }
    needs_forest = {
        posixpath.dirname(path)
        for path, found in targets.items()
        if any(target not in own_dirs and target not in own for target in found)
    }
    changed = True
    while changed:  # a climb into a folder that needs the forest needs it too, transitively
        changed = False
        for path, found in targets.items():
            folder = posixpath.dirname(path)
            if folder in needs_forest:
                continue
            if any(_climbs_out(folder, target) and target in needs_forest for target in found):
                needs_forest.add(folder)
                changed = True
    real: set[str] = set()
    for chain in needs_forest:
        while chain:
            real.add(chain)
            chain = posixpath.dirname(chain)
    return sorted(real)


@dataclass(frozen=True)
class Harvest:
    entries: dict[str, EntryInfo]  # canonical name -> entry
    new_bytes: int
    created: tuple[str, ...]
    repaired: tuple[str, ...] = ()  # entries whose damaged files --force replaced in place


def harvest(
    *,
    layout: VolumeLayout,
    staging: Staging,
    packages: list[LockedPackage],
    keys: dict[str, str],
    python_version: str,
    interpreter: Path | None = None,
    on_entry: Callable[[str], None] | None = None,
) -> Harvest:
    """Move each staged distribution into its store entry; returns the entries by name.

    With ``interpreter`` each entry's bytecode is compiled after it is sorted
    out, and it is published while the next ones compile (``_compile_and_publish``).
    """
    staged = _staged_distributions(staging.target)
    for package in packages:
        found = staged.get(package.name)
        if found is None:
            raise InstallError(
                f"uv reported success but {package.name}=={package.version} is not in the staging folder"
            )
        if found.version != package.version:
            raise InstallError(f"{package.name}: locked {package.version} but the artifact installed {found.version}")
    wanted = {package.name: staged[package.name] for package in packages}
    builds = {name: _EntryBuild(key=keys[name], folder=staging.entries / keys[name]) for name in wanted}
    for build in builds.values():
        build.folder.mkdir()
    _distribute(staging.target, _Ownership(staged.values(), staging.target), builds)
    crash_point("entries-distributed")
    by_name = {package.name: package for package in packages}
    check_folder(layout.store_dir, layout.root).mkdir(parents=True, exist_ok=True)
    published = new_staging(layout)
    try:
        infos: dict[str, EntryInfo] = {}

        def manifest(name: str) -> _EntryBuild:
            infos[name] = _write_manifest(builds[name], wanted[name], by_name[name], python_version)
            return builds[name]

        pipeline = _Pipeline(layout, staging, published, interpreter=interpreter, python_version=python_version)
        pipeline.run([(name, builds[name].folder) for name in _compile_order(wanted)], manifest)
        crash_point("published")
        return _store_published(layout, published, builds, infos, on_entry)
    finally:
        _remove_published(published)


def _compile_order(wanted: dict[str, _Staged]) -> list[str]:
    """Entries with the most sources first, so the last ones to compile leave few pycs to copy at the end.

    Everything but the bytecode is copied while they compile (``Publisher.start``). Measured on the
    44-wheel set before that: smallest first took 61 s, the publisher idle while the large ones compiled.
    """
    sources = {name: sum(path.endswith(".py") for path in dist.files) for name, dist in wanted.items()}
    return sorted(wanted, key=lambda name: (-sources[name], name))


@dataclass(frozen=True)
class _Pipeline:
    """Compile entries one by one and publish each as soon as its bytecode is written.

    Compiling is CPU-bound on the pod, publishing waits on the volume: together
    they take about as long as the longer of the two. A failure on either side
    stops the other (``Publisher.cancel``; the compile's line callback raises).
    """

    layout: VolumeLayout
    staging: Staging
    published: Staging
    interpreter: Path | None
    python_version: str

    def run(self, order: list[tuple[str, Path]], manifest: Callable[[str], _EntryBuild]) -> None:
        """``manifest(name)`` for each of ``order`` (name, entry folder) once its bytecode is written, then publish it."""
        if self.staging.same_disk_as_volume:  # renames cost nothing: each entry moves once compiled
            self._compile(order, manifest, lambda build: os.rename(build.folder, self.published.root / build.key))
            return
        packs = check_folder(self.layout.deps_dir / PACKS, self.layout.root)
        with Publisher(self.published.root, packs=packs) as publisher:
            self._compile(order, manifest, lambda build: publisher.add({build.key: build.folder}), publisher)
            publisher.finish()

    def _compile(
        self,
        order: list[tuple[str, Path]],
        manifest: Callable[[str], _EntryBuild],
        publish: Callable[[_EntryBuild], None],
        publisher: Publisher | None = None,
    ) -> None:
        if self.interpreter is None:
            for name, _ in order:
                publish(manifest(name))
            return

        def start_publishing() -> None:
            # All but the bytecode goes onto the volume while a pool compiles it. Compiled here instead (a few
            # sources), each entry goes whole once compiled: its pycs' folder then fills beside its sources'
            # instead of after them (creates in one folder queue on its lock; one leaf: 0.17 s against 0.25 s).
            if publisher is not None:
                publisher.start({folder.name: folder for _, folder in order})

        def compiled(index: int | None) -> None:
            if index is not None:
                publish(manifest(order[index][0]))
                if index == 0:  # the entry with the most sources; others may compile, some are being published
                    crash_point("first-entry-compiled")  # not in faults.POINTS: only installs that compile reach it
            elif publisher is not None:
                publisher.raise_failure()  # a failed publish stops the compile at its next line

        compile_entries(
            [folder for _, folder in order],
            origin=self.staging.target,
            interpreter=self.interpreter,
            python_version=self.python_version,
            log_dir=self.layout.logs_dir,
            on_line=compiled,
            before_pool=start_publishing,
        )


def _write_manifest(build: _EntryBuild, dist: _Staged, package: LockedPackage, python_version: str) -> EntryInfo:
    """The entry's manifest, written inside it on local disk before it is published."""
    top: dict[str, bool] = {}
    for path, is_dir in build.moved:
        head, _, rest = path.partition("/")
        top[head] = top.get(head, False) or is_dir or bool(rest)
    if (build.folder / "__pycache__").is_dir():  # bytecode of top-level modules, compiled after distributing
        top["__pycache__"] = True
    info = EntryInfo(
        entry=build.key,
        name=dist.name,
        version=dist.version,
        top_level=[TopItem(name=item, is_dir=is_dir) for item, is_dir in sorted(top.items())],
        real_dirs=_real_dirs(build, dist),
        size_bytes=sum(dist.files.values()),
        file_count=len(dist.files),
    )
    manifest = EntryManifest(info=info, artifact_sha256=package.artifact_hash, python_version=python_version)
    write_document(build.folder / ENTRY_MANIFEST, manifest)
    return info


def _store_published(
    layout: VolumeLayout,
    published: Staging,
    builds: dict[str, _EntryBuild],
    infos: dict[str, EntryInfo],
    on_entry: Callable[[str], None] | None,
) -> Harvest:
    """Rename each published entry into the store: one rename each; a racing installer's earlier one wins."""
    entries: dict[str, EntryInfo] = {}
    created: list[str] = []
    new_bytes = 0
    for position, name in enumerate(sorted(infos)):
        key = builds[name].key
        final = layout.store_dir / key
        if os.path.islink(final):
            raise planted_link(final, final)
        try:
            os.rename(published.root / key, final)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            entries[name] = _existing_entry(layout, key, final)
        else:
            created.append(key)
            new_bytes += infos[name].size_bytes
            entries[name] = infos[name]
        if on_entry is not None:
            on_entry(name)
        if position == 0:
            crash_point("first-entry-stored")
    return Harvest(entries=entries, new_bytes=new_bytes, created=tuple(created))


def _existing_entry(layout: VolumeLayout, key: str, final: Path) -> EntryInfo:
    """Another installer put the same distribution in place first: use theirs."""
    try:
        existing = read_entry_manifest(layout, key)
    except StateError:
        existing = None
    if existing is None:
        raise InstallError(
            f"store entry {final} appeared without a readable manifest while installing",
            hint="run the install again: it builds an entry it cannot read under a new name",
        ) from None
    return existing.info


def _remove_published(published: Staging) -> None:
    """The run's staging folder on the volume: empty (one call) unless a racing installer's entry won."""
    try:
        os.rmdir(published.root)
    except FileNotFoundError:
        pass
    except OSError:
        remove_tree(published.root)


# -- verifying and repairing entries ------------------------------------------------------
@dataclass(frozen=True)
class EntryHealth:
    """What ``--force`` found in a store entry: usable (``info``), and the files to replace."""

    exists: bool
    info: EntryInfo | None = None  # None: absent, or nothing to verify it against
    damaged: tuple[str, ...] = ()
    rows: dict[str, str] = field(default_factory=dict)  # RECORD path -> sha256 digest


def inspect_entry(layout: VolumeLayout, entry: str) -> EntryHealth:
    """Verify every file of ``entry`` against its RECORD; refresh the manifest's ``real_dirs`` to today's rule."""
    folder = layout.store_dir / entry
    if os.path.islink(folder):
        raise planted_link(folder, folder)
    if not folder.is_dir():
        return EntryHealth(exists=False)
    try:
        manifest = read_entry_manifest(layout, entry)
    except StateError:
        manifest = None
    dist_infos = [item.name for item in manifest.info.top_level if item.name.endswith(".dist-info")] if manifest else []
    if manifest is None or len(dist_infos) != 1:
        return EntryHealth(exists=True)
    try:
        rows = read_record(folder / dist_infos[0] / "RECORD")
    except (OSError, UnicodeDecodeError, csv.Error):
        return EntryHealth(exists=True)
    problems, paths = record_problems(folder, rows)
    info = manifest.info
    real = _origin_real_dirs(paths, lambda path: search_paths(folder / path))
    if real != info.real_dirs:
        # An entry made by an older rule: the forest must learn the folders its native code needs.
        info = info.model_copy(update={"real_dirs": real})
        write_document(folder / ENTRY_MANIFEST, manifest.model_copy(update={"info": info}))
    digests = {posixpath.normpath(path): digest for path, digest, _ in rows}
    return EntryHealth(exists=True, info=info, damaged=tuple(path for path, _ in problems), rows=digests)


def repair_entry(layout: VolumeLayout, staging: Staging, entry: str, health: EntryHealth) -> bool:
    """Replace each damaged file of ``entry`` by its verified copy from ``staging``, one rename per file.

    A reader of the entry sees the damaged file or the good one, never a half
    one; a run killed halfway leaves the rest damaged, and the next ``--force``
    finds exactly those. False, with nothing touched, when a fresh copy does
    not match the entry's RECORD (the RECORD itself was changed): the caller
    then builds a new entry instead.
    """
    for path in health.damaged:
        try:
            if record_digest(staging.target / path) != health.rows.get(path):
                return False
        except OSError:
            return False
    folder = check_folder(layout.store_dir / entry, layout.root)
    known: set[Path] = set()
    for path in health.damaged:
        destination = check_inside(folder / path, folder, known=known)  # a link planted inside the entry
        destination.parent.mkdir(parents=True, exist_ok=True)
        # Staging is on local disk: copy next to the damaged file, then one rename over it.
        temporary = destination.with_name(f".{destination.name}.repair-{uuid.uuid4().hex[:8]}")
        source = staging.target / path
        copy_file(source, temporary, stat.S_IMODE(os.stat(source).st_mode), umask=process_umask())
        os.replace(temporary, destination)
        crash_point("first-file-repaired")  # only --force reaches it: not in faults.POINTS, which every install passes
    return True
