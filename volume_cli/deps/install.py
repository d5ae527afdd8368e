"""Install: bring the current generation to the lock, changing only what differs.

1. No-op fast path: if the recorded state says the current generation was
   built from this config hash and lock, and it is intact, return at once:
   no resolver, no network, a handful of file operations.
2. Under the project's writer lock: reuse or make the lock, read what is
   installed from disk, plan, install the missing distributions with ONE uv
   call into a staging folder, move them into store entries, link a new
   generation, record it, and switch ``pyX.Y/<project>`` with one rename.
   A changed config is resolved while the lock is taken (``EarlyResolve``:
   it only reads the volume), and used only if still valid under the lock.

Before it creates or reuses any store entry the install records its intent
(``deps/record.py``), so a concurrent gc keeps what it is about to link.
A crash anywhere before the switch leaves the current generation untouched;
half-built staging folders and generations are removed by the next run, and
a crash after it leaves state.json one switch behind, which every reader
reconciles with the link and the next writer records.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from volume_cli import __version__
from volume_cli.config.dependencies import PYPI_SIMPLE_URL
from volume_cli.deps.bytecode import compile_bytecode, compile_first
from volume_cli.deps.documents import (
    EntryInfo,
    EntryManifest,
    GenerationRecord,
    LockedPackage,
    generation_record_path,
    install_intent_path,
    read_generation_record,
    read_lock_info,
)
from volume_cli.deps.entries import (
    EntryHealth,
    Harvest,
    Staging,
    base_key,
    cleanup_stale_staging,
    entry_key,
    harvest,
    inspect_entry,
    read_entry_manifest,
    remove_tree,
    repair_entry,
)
from volume_cli.deps.faults import crash_point
from volume_cli.deps.forest import (
    TEMP_PREFIX,
    Forest,
    adopt_forest,
    build_forest,
    building_spare_dir,
    complete_forest,
    current_generation,
    generation_dir,
    new_generation_name,
    spare_dir,
    spare_source,
    start_forest,
    switch_current,
    temp_generation_dir,
)
from volume_cli.deps.lock import (
    CurrentLock,
    EarlyResolve,
    read_current_lock,
    report_locked,
    resolve,
    write_lock_files,
)
from volume_cli.deps.plan import InstalledDistribution, InstallPlan, compute_plan, read_installed
from volume_cli.deps.python import UV_PLATFORM, TargetPython, find_target
from volume_cli.deps.record import clear_intent, record_intent, record_switch, repair_state
from volume_cli.deps.scratch import cleanup_stale_scratch, new_local_staging, remove_in_background, scratch_dir
from volume_cli.deps.scripts import rewrite_console_scripts
from volume_cli.deps.space import check_install_space
from volume_cli.deps.uv_progress import UvInstallWatcher
from volume_cli.deps.uvtool import (
    default_cache_dir,
    error_excerpt,
    failing_package,
    raise_for_network,
    uv_binary,
    uv_environment,
)
from volume_cli.errors import InstallError, StateError, SubprocessError, VolumeCliError
from volume_cli.fileops import TRASH_PREFIX
from volume_cli.fsguard import guard_volume
from volume_cli.layout import VolumeLayout
from volume_cli.progress import Progress
from volume_cli.project.base import Project
from volume_cli.project.definition import ProjectDefinition
from volume_cli.runner import run
from volume_cli.runtime import boot_path
from volume_cli.store.documents import write_document
from volume_cli.store.lock import LeaseLock
from volume_cli.store.state import (
    HookRecord,
    ProjectState,
    read_project_state,
    update_project_state,
    utc_now,
)
from volume_cli.store.writer_locks import project_lock

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from concurrent.futures import Future


@dataclass(frozen=True)
class InstallResult:
    project: str
    python_version: str
    plan: InstallPlan
    noop: bool
    dry_run: bool
    generation: str | None
    previous_generation: str | None
    deps_path: Path
    lock_hash: str | None
    package_count: int
    installed_count: int = 0  # distributions uv installed in this run
    repaired_count: int = 0  # damaged store entries --force repaired in place
    reused_count: int = 0  # changed distributions found in the store already
    bytes_added: int = 0
    link_count: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["deps_path"] = str(self.deps_path)
        data["plan"] = self.plan.to_dict()
        return data


def fast_noop_record(
    layout: VolumeLayout, project: str, python_version: str, config_hash: str, *, state: ProjectState | None = None
) -> tuple[GenerationRecord, str | None] | None:
    """The current generation's record and the previous generation when nothing needs doing, else None.

    Cost: read state.json, one readlink, read the generation record and
    lock.json, two stats. No lock is taken: it only reads.
    """
    state = state or read_project_state(layout, project)
    if state is None or state.deps is None or state.deps.config_hash != config_hash:
        return None
    current = current_generation(layout, project, python_version)
    if current is None or current != state.deps.generation:
        return None
    record = read_generation_record(layout, project, current)
    if record is None or record.config_hash != config_hash or record.lock_hash != state.deps.lock_hash:
        return None
    if record.python_version != python_version:
        return None
    lock = read_lock_info(layout, project)
    if lock is None or lock.pylock_sha256 != record.lock_hash or lock.config_hash != config_hash:
        return None
    if not layout.deps_path(project, python_version).is_dir():  # the link resolves
        return None
    if install_intent_path(layout, project).exists():  # a killed run's: the locked path clears it
        return None
    return record, state.deps.previous_generation


def _fresh_lock(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    mirror: str | None,
    config_hash: str,
    target: TargetPython,
    upgrade: bool,
    cache_dir: Path,
    progress: Progress,
    resolving: EarlyResolve | None,
) -> CurrentLock:
    """The stored lock when it still fits, else a fresh one (the one resolved early if still valid), not stored yet."""
    current = read_current_lock(layout, project.name)
    if (
        not upgrade
        and current is not None
        and current.info.config_hash == config_hash
        and current.info.python_version == target.version
    ):
        if resolving is not None:
            resolving.discard()
        return current
    early = resolving.take() if resolving is not None else None
    if early is not None:
        return early
    return resolve(
        layout=layout,
        definition=project,
        target=target,
        mirror=mirror,
        upgrade=upgrade,
        cache_dir=cache_dir,
        progress=progress,
        store=False,
    )


def _cleanup(layout: VolumeLayout, project: str, python_version: str) -> list[str]:
    """Remove what killed runs left: stale staging folders, this project's unfinished generations.

    Returns the generations whose spare forests the same listing found (``deps/forest.py``).
    """
    cleanup_stale_staging(layout)
    folder = layout.generations_dir(project, python_version)
    try:
        children = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for child in children:
        # We hold the project's lock, so no live run is building these.
        if child.name.startswith((TEMP_PREFIX, TRASH_PREFIX)):
            remove_tree(Path(child.path))
    return sorted(filter(None, (spare_source(child.name) for child in children)))


def plan_install(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    mirror: str | None,
    force: bool = False,
    upgrade: bool = False,
    cache_dir: Path | None = None,
    progress: Progress,
) -> InstallPlan:
    """What ``install`` would do; changes nothing (a stale lock is resolved in a temp folder)."""
    return _plan(
        layout=layout,
        project=project,
        mirror=mirror,
        force=force,
        upgrade=upgrade,
        cache_dir=cache_dir or default_cache_dir(),
        progress=progress,
    )[0]


@dataclass(frozen=True)
class _Current:
    """The generation being replaced: its name, its record and what it has installed."""

    generation: str | None
    record: GenerationRecord | None
    installed: dict[str, InstalledDistribution]


def _read_current(layout: VolumeLayout, project: str, python_version: str) -> _Current:
    current = current_generation(layout, project, python_version)
    if current is None:
        return _Current(None, None, {})
    record = read_generation_record(layout, project, current)
    recorded = record.entries if record is not None else []
    installed = read_installed(layout.deps_path(project, python_version), recorded=recorded, store_dir=layout.store_dir)
    return _Current(current, record, installed)


def _plan(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    mirror: str | None,
    force: bool,
    upgrade: bool,
    cache_dir: Path,
    progress: Progress,
    on_current: Callable[[_Current], None] = lambda current: None,
    target: TargetPython | None = None,
    resolving: EarlyResolve | None = None,
) -> tuple[InstallPlan, CurrentLock, TargetPython, GenerationRecord | None]:
    """The plan, the lock, the target and the current generation's record.

    The current generation is read while uv locks (the one waits on the
    volume, the other on the resolver), then handed to ``on_current`` there.
    """
    from concurrent.futures import ThreadPoolExecutor

    python_version = project.python_version
    target = target or find_target(python_version)

    def read_current() -> _Current:
        current = _read_current(layout, project.name, python_version)
        on_current(current)
        return current

    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(read_current)
        lock = _fresh_lock(
            layout=layout,
            project=project,
            mirror=mirror,
            config_hash=project.config_hash(mirror=mirror),
            target=target,
            upgrade=upgrade,
            cache_dir=cache_dir,
            progress=progress,
            resolving=resolving,
        )
        current = reading.result()
    plan = compute_plan(
        project=project.name,
        python_version=python_version,
        current_generation=current.generation,
        lock_hash=lock.info.pylock_sha256,
        locked=lock.info.packages,
        installed=current.installed,
        force=force,
        bytecode=target.interpreter is not None,
    )
    return plan, lock, target, current.record


@dataclass(frozen=True)
class _Install:
    """One install's inputs, so each step takes one argument instead of nine."""

    layout: VolumeLayout
    project: ProjectDefinition
    mirror: str | None
    force: bool
    upgrade: bool
    cache_dir: Path
    progress: Progress
    config_hash: str
    started: float
    background: list[threading.Thread] = field(default_factory=list)  # joined before install() returns

    @property
    def python_version(self) -> str:
        return self.project.python_version

    def result(self, *, plan: InstallPlan, **fields: Any) -> InstallResult:
        return InstallResult(
            project=self.project.name,
            python_version=self.python_version,
            plan=plan,
            deps_path=self.layout.deps_path(self.project.name, self.python_version),
            seconds=time.monotonic() - self.started,
            **fields,
        )

    def plan(
        self,
        *,
        on_current: Callable[[_Current], None] = lambda current: None,
        target: TargetPython | None = None,
        resolving: EarlyResolve | None = None,
    ) -> tuple[InstallPlan, CurrentLock, TargetPython, GenerationRecord | None]:
        return _plan(
            on_current=on_current,
            target=target,
            resolving=resolving,
            layout=self.layout,
            project=self.project,
            mirror=self.mirror,
            force=self.force,
            upgrade=self.upgrade,
            cache_dir=self.cache_dir,
            progress=self.progress,
        )


def install(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    mirror: str | None,
    force: bool = False,
    upgrade: bool = False,
    dry_run: bool = False,
    cache_dir: Path | None = None,
    progress: Progress,
    wait_seconds: float = 0,
) -> InstallResult:
    """No-op check, dry run, then under the project's lock: lock, plan, materialize, commit, record; then the hook."""
    started = time.monotonic()
    config_hash = project.config_hash(mirror=mirror)
    job = _Install(
        layout, project, mirror, force, upgrade, cache_dir or default_cache_dir(), progress, config_hash, started
    )
    relock = upgrade
    if not force and not upgrade:
        state = read_project_state(layout, project.name)
        noop = _fast_noop(job, state, dry_run=dry_run)
        if noop is not None:
            return noop
        relock = state is None or state.deps is None or state.deps.config_hash != config_hash
    if dry_run:
        return _dry_run(job)
    # Before anything is written, even the failure log of the resolve begun next.
    guard_volume(layout, project=project.name, python_version=project.python_version)
    target = find_target(project.python_version)
    try:
        with (
            _resolve_early(job, target) if relock else nullcontext() as resolving,
            project_lock(
                layout, project.name, command="deps install", wait_seconds=wait_seconds, progress=progress
            ) as lease,
        ):
            spares = _prepare(job)
            generation = new_generation_name()
            with _EarlyForest(job, generation, spares) as early, _LockFiles(job) as lock_files:
                plan, lock, target, current_record = job.plan(
                    on_current=early.speculate, target=target, resolving=resolving
                )
                lock_files.start(lock)
                current = plan.current_generation
                if not plan.has_changes and current is not None and current_record is not None:
                    early.discard()
                    lock_files.wait()
                    return _record_unchanged(job, plan, lock, current, current_record)
                result = _build_and_switch(job, lease, plan, lock, target, current_record, early, lock_files)
        assert result.generation is not None
        _follow_up(layout, project, result.generation, only_if_due=False)
    finally:
        for thread in job.background:  # the local scratch removal: off the critical path, never left behind
            thread.join()
    return result


def _fast_noop(job: _Install, state: ProjectState | None, *, dry_run: bool) -> InstallResult | None:
    """The recorded state already matches: no lock, no resolver, a handful of file operations."""
    if state is None:  # nothing recorded yet (fast_noop_record would read state.json again)
        return None
    fast = fast_noop_record(job.layout, job.project.name, job.python_version, job.config_hash, state=state)
    if fast is None or _follow_up_due(job.layout, job.project, state, fast[0].generation):
        return None
    record, previous = fast
    return job.result(
        plan=InstallPlan(job.project.name, job.python_version, record.generation, record.lock_hash),
        noop=True,
        dry_run=dry_run,
        generation=record.generation,
        previous_generation=previous,
        lock_hash=record.lock_hash,
        package_count=len(record.entries),
        link_count=record.link_count,
    )


def _dry_run(job: _Install) -> InstallResult:
    plan, lock, _, _ = job.plan()
    return job.result(
        plan=plan,
        noop=not plan.has_changes,
        dry_run=True,
        generation=plan.current_generation,
        previous_generation=None,
        lock_hash=lock.info.pylock_sha256,
        package_count=len(lock.info.packages),
    )


def _resolve_early(job: _Install, target: TargetPython) -> EarlyResolve:
    """The config changed (or --upgrade): uv resolves while the project's lock is taken and the volume tidied."""
    return EarlyResolve(
        layout=job.layout,
        definition=job.project,
        target=target,
        mirror=job.mirror,
        upgrade=job.upgrade,
        cache_dir=job.cache_dir,
        progress=job.progress,
    )


def _prepare(job: _Install) -> list[str]:
    """Under the project's lock, before planning: clear what killed runs left; returns the spares' generations."""
    spares = _cleanup(job.layout, job.project.name, job.python_version)
    # We hold the project's lock: an intent left here is a killed run's, and
    # state.json may be one switch behind the link; record the truth first.
    clear_intent(job.layout, job.project.name)
    repair_state(job.layout, job.project.name, job.python_version)
    return spares


def _record_unchanged(
    job: _Install, plan: InstallPlan, lock: CurrentLock, current: str, current_record: GenerationRecord
) -> InstallResult:
    """Nothing to install: record that the current generation serves this config and lock."""
    layout, project = job.layout, job.project
    record = current_record.model_copy(update={"config_hash": job.config_hash, "lock_hash": lock.info.pylock_sha256})
    write_document(generation_record_path(layout, project.name, current), record)
    state = read_project_state(layout, project.name)
    previous = None
    if state is not None and state.deps is not None:
        # A run killed right after its switch left state.json naming the generation before.
        same = state.deps.generation == current
        previous = state.deps.previous_generation if same else state.deps.generation
    record_switch(layout, project.name, project.python_version, record, previous=previous, new_bytes=0)
    _follow_up(layout, project, current, only_if_due=True)
    return job.result(
        plan=plan,
        noop=True,
        dry_run=False,
        generation=current,
        previous_generation=previous,
        lock_hash=record.lock_hash,
        package_count=len(record.entries),
        link_count=record.link_count,
    )


def _build_and_switch(
    job: _Install,
    lease: LeaseLock,
    plan: InstallPlan,
    lock: CurrentLock,
    target: TargetPython,
    current_record: GenerationRecord | None,
    early: _EarlyForest,
    lock_files: _LockFiles,
) -> InstallResult:
    """Record the intent, materialize the entries, commit a new generation and switch to it."""
    layout, project = job.layout, job.project
    generation = early.generation
    intended = _intended_entries(plan, lock, target.version)
    if not early.covers(intended):  # a removal only links entries the early intent names already
        record_intent(
            layout, project=project.name, python_version=job.python_version, generation=generation, entries=intended
        )
    entries, harvested, reused = _materialize(
        layout=layout,
        plan=plan,
        lock=lock,
        target=target,
        force=job.force,
        current_record=current_record,
        cache_dir=job.cache_dir,
        mirror=job.mirror,
        progress=job.progress,
        on_picked=early.start,
        background=job.background,
    )
    lock_files.wait()  # the generation's record names the lock: it is stored first
    repaired = {entries[name].entry for name in harvested.repaired}
    record = _commit_generation(job, generation, entries, lock, early, repaired=repaired)
    lease.ensure_held()
    legacy = switch_current(layout, project.name, job.python_version, generation)
    crash_point("switched")
    current = plan.current_generation or legacy  # a plain folder of an older tool is kept as the previous generation
    _record_and_clear(job, record, previous=current, new_bytes=harvested.new_bytes, before_clearing=early.keep_spare)
    return job.result(
        plan=plan,
        noop=False,
        dry_run=False,
        generation=generation,
        previous_generation=current,
        lock_hash=record.lock_hash,
        package_count=len(entries),
        installed_count=len(harvested.entries),
        repaired_count=len(harvested.repaired),
        reused_count=len(reused),
        bytes_added=harvested.new_bytes,
        link_count=record.link_count,
    )


def _record_and_clear(
    job: _Install,
    record: GenerationRecord,
    *,
    previous: str | None,
    new_bytes: int,
    before_clearing: Callable[[], None],
) -> None:
    """state.json names the generation the link now does, and the intent goes: at once, each a few round trips.

    Either order is safe: gc and the no-op check follow the link, not state.json
    (``deps/record.py``), and a run killed between the two is repaired by the next.
    ``before_clearing`` (the spare put in place) runs while the intent still keeps gc off its temp folder.
    """
    from concurrent.futures import ThreadPoolExecutor

    layout, project = job.layout, job.project

    def clear() -> None:
        before_clearing()
        clear_intent(layout, project.name)

    with ThreadPoolExecutor(1) as pool:
        clearing = pool.submit(clear)
        record_switch(layout, project.name, project.python_version, record, previous=previous, new_bytes=new_bytes)
        clearing.result()


class _LockFiles:
    """A fresh lock written while the install goes on: it waits on the volume, uv and the compile on the pod.

    It is stored before the generation that names it is recorded (``wait``).
    A run killed before that leaves a lock that no generation uses, as when
    it was stored first; lock.json still comes last (``write_lock_files``).
    """

    def __init__(self, job: _Install) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.job = job
        self._pool = ThreadPoolExecutor(1)
        self._future: Future[CurrentLock] | None = None

    def start(self, lock: CurrentLock) -> None:
        if lock.uv_lock is None:
            return  # the stored one
        self._future = self._pool.submit(write_lock_files, self.job.layout, lock)
        report_locked(self.job.progress, lock)

    def wait(self) -> None:
        if self._future is not None:
            self._future.result()

    def __enter__(self) -> _LockFiles:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> None:
        self._pool.shutdown(wait=True)  # never a write behind our back once the project's lock is released


class _EarlyForest:
    """The links of the entries an install keeps, made while uv locks or installs; and the next install's spare.

    While uv locks, the current generation's entries are linked on the guess
    that most stay (``speculate``; one intent names the temporary generation
    and those entries first, so gc leaves both alone); without a current
    generation, the kept entries are linked while uv installs the changed
    ones (``start``). ``complete_forest`` then fixes the guess. The forest is
    built in the generation's temporary folder, which no one serves: a failure
    removes it, and a kill leaves it to the next run's cleanup.

    A spare forest found on the volume is renamed in as that folder and only
    its differing links change (``deps/forest.py``). Beside it, a new spare of
    the same entries is built in another folder (creates in two folders do not
    queue behind each other), kept when the install ends (``keep_spare``).
    """

    def __init__(self, job: _Install, generation: str, spares: list[str]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.job = job
        self.generation = generation
        self.building = temp_generation_dir(job.layout, job.project.name, job.python_version, generation)
        self._spares = spares  # the generations whose spares are on the volume
        self._spare_entries: dict[str, list[EntryInfo]] = {}  # those whose records were read already
        self._pool = ThreadPoolExecutor(1)
        self._future: Future[Forest] | None = None
        self._spare_pool = ThreadPoolExecutor(1)
        self._spare_future: Future[tuple[Forest, str]] | None = None  # the spare being built, and what it copies
        self._intent: set[str] | None = None  # the entries the early intent names

    def speculate(self, current: _Current) -> None:
        if current.record is None or not current.record.entries:
            return
        layout, project = self.job.layout, self.job.project.name
        named = {base_key(info.entry) for info in current.record.entries}
        record_intent(
            layout,
            project=project,
            python_version=self.job.python_version,
            generation=self.generation,
            entries=sorted(named),
        )
        self._intent = named
        self._spare_entries[current.record.generation] = list(current.record.entries)
        # Only entries the store still holds (read_installed listed it): a lost one is installed again first.
        linked = {name: dist.entry for name, dist in current.installed.items()}
        kept = {info.name: info for info in current.record.entries if linked.get(info.name) == info.entry}
        self.start(kept)
        if len(kept) == len(current.record.entries):
            self.spare_of(list(kept.values()), source=current.record.generation)

    def covers(self, intended: list[str]) -> bool:
        return self._intent is not None and set(intended) <= self._intent

    def start(self, kept: dict[str, EntryInfo]) -> None:
        if self._future is not None or not kept:
            return  # linked on a guess already (complete_forest brings it to the entries picked), or nothing kept
        ordered = [kept[name] for name in sorted(kept)]
        self._future = self._pool.submit(self._link, ordered)

    def _link(self, ordered: list[EntryInfo]) -> Forest:
        made = self._from_spare(ordered)
        if made is None:
            self.building.mkdir(parents=True)
            made = start_forest(self.job.layout, self.building, ordered)
        crash_point("early-forest-built")
        return made

    def _from_spare(self, ordered: list[EntryInfo]) -> Forest | None:
        """The spare renamed in and brought to ``ordered``; None (nothing left in ``building``) when there is none."""
        layout, project, python_version = self.job.layout, self.job.project.name, self.job.python_version
        for source in self._spares:
            entries = self._entries_of(source)
            if entries is None:
                continue  # its generation is gone: gc removes the spare with it
            try:
                os.rename(spare_dir(layout, project, python_version, source), self.building)
            except OSError:
                continue  # a concurrent gc took it
            self._spares = [other for other in self._spares if other != source]
            try:
                made = adopt_forest(layout, self.building, entries)
                if made is not None:
                    return complete_forest(layout, self.building, ordered, made=made)
            except OSError as exc:  # an entry it links went (gc --drop-previous): built anew below
                log.debug("spare of %s not used: %s", source, exc)
            remove_tree(self.building)
            return None
        return None

    def _entries_of(self, source: str) -> list[EntryInfo] | None:
        if source not in self._spare_entries:
            try:
                record = read_generation_record(self.job.layout, self.job.project.name, source)
            except (OSError, StateError):
                record = None
            if record is None:
                return None
            self._spare_entries[source] = list(record.entries)
        return self._spare_entries[source]

    def spare_of(self, entries: list[EntryInfo], *, source: str) -> None:
        """Begin the next install's spare: the forest of ``entries``, which generation ``source`` links."""
        if self._spare_future is None:
            self._spare_future = self._spare_pool.submit(self._build_spare, entries, source)

    def spare_to(self, entries: list[EntryInfo], *, generation: str, repaired: set[str]) -> None:
        """The spare becomes a copy of the new ``generation`` (its ``entries``): begun now, or the begun one brought to it.

        So the next install finds a spare of its current generation, and gc keeps it as long as that.
        """
        begun = self._spare_future
        if begun is None:
            self.spare_of(entries, source=generation)
        else:
            self._spare_future = self._spare_pool.submit(self._bring_spare, begun, entries, generation, repaired)

    def _build_spare(self, entries: list[EntryInfo], source: str) -> tuple[Forest, str]:
        folder = building_spare_dir(self.job.layout, self.job.project.name, self.job.python_version, self.generation)
        folder.mkdir(parents=True)  # a first install makes the generations' folder at the same moment
        made = start_forest(self.job.layout, folder, entries)
        crash_point("spare-built")
        return made, source

    def _bring_spare(
        self, begun: Future[tuple[Forest, str]], entries: list[EntryInfo], generation: str, repaired: set[str]
    ) -> tuple[Forest, str]:
        made, _ = begun.result()  # done: the one thread ran it first
        folder = building_spare_dir(self.job.layout, self.job.project.name, self.job.python_version, self.generation)
        return complete_forest(self.job.layout, folder, entries, made=made, repaired=repaired), generation

    def keep_spare(self) -> None:
        """The spare built during this install goes in place for the next one; a failed one goes (never fatal)."""
        if self._spare_future is None:
            return
        layout, project, python_version = self.job.layout, self.job.project.name, self.job.python_version
        folder = building_spare_dir(layout, project, python_version, self.generation)
        try:
            _, source = self._spare_future.result()
            os.rename(folder, spare_dir(layout, project, python_version, source))
        except (OSError, VolumeCliError) as exc:
            log.debug("no spare kept: %s", exc)
            with contextlib.suppress(OSError, VolumeCliError):
                remove_tree(folder)  # else the next install's cleanup removes it
        self._spare_future = None

    def result(self) -> Forest | None:
        """What was linked early; None (and the folder gone) when that failed: the forest is then built whole."""
        if self._future is None:
            return None
        try:
            return self._future.result()
        except OSError:
            remove_tree(self.building)  # a guess is never worth failing the install for
            self._future = None
            return None

    def discard(self) -> None:
        """Nothing to install after all: remove the guess and its intent."""
        self._pool.shutdown(wait=True)
        if self._future is not None:
            remove_tree(self.building)
            self._future = None
        if self._intent is not None:
            clear_intent(self.job.layout, self.job.project.name)
            self._intent = None

    def __enter__(self) -> _EarlyForest:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> None:
        self._pool.shutdown(wait=True)  # never leave a thread linking behind our back
        self._spare_pool.shutdown(wait=True)
        if error is not None and self._future is not None:
            remove_tree(self.building)
        if error is not None and self._intent is not None:
            clear_intent(self.job.layout, self.job.project.name)  # a failed lock left nothing to protect
        self.keep_spare()  # a spare is the forest of entries a generation links, whatever became of this install


def _commit_generation(
    job: _Install,
    generation: str,
    entries: dict[str, EntryInfo],
    lock: CurrentLock,
    early: _EarlyForest,
    *,
    repaired: set[str],
) -> GenerationRecord:
    """Link the forest in a temp folder (or complete the one begun early), record it, rename it into place."""
    layout, project, python_version = job.layout, job.project.name, job.python_version
    job.progress.step(f"linking {len(entries)} distributions")
    building = temp_generation_dir(layout, project, python_version, generation)
    ordered = [entries[name] for name in sorted(entries)]
    made = early.result()
    early.spare_to(ordered, generation=generation, repaired=repaired)
    if made is None:
        building.mkdir(parents=True)
        links = build_forest(layout, building, ordered)
    else:
        links = len(complete_forest(layout, building, ordered, made=made, repaired=repaired).links)
    crash_point("forest-built")
    record = GenerationRecord(
        generation=generation,
        project=project,
        python_version=python_version,
        path=layout.relative(generation_dir(layout, project, python_version, generation)),
        config_hash=job.config_hash,
        lock_hash=lock.info.pylock_sha256,
        tool_version=__version__,
        link_count=links,
        entries=ordered,
    )
    write_document(generation_record_path(layout, project, generation), record)
    crash_point("generation-recorded")
    os.rename(building, generation_dir(layout, project, python_version, generation))
    crash_point("before-switch")
    # Every entry, not only the reused ones: one stat each, and a generation with holes never goes live.
    # Lookups in one folder overlap (creates would not): 16 in flight instead of one after another.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        present = list(pool.map(lambda entry: (layout.store_dir / entry.entry).is_dir(), ordered))
    missing = [entry.entry for entry, there in zip(ordered, present, strict=True) if not there]
    if missing:
        raise InstallError(
            f"store entries disappeared while installing (a concurrent gc?): {', '.join(missing)}",
            hint="run the install again",
        )
    return record


def _materialize(
    *,
    layout: VolumeLayout,
    plan: InstallPlan,
    lock: CurrentLock,
    target: TargetPython,
    force: bool,
    current_record: GenerationRecord | None,
    cache_dir: Path,
    mirror: str | None,
    progress: Progress,
    on_picked: Callable[[dict[str, EntryInfo]], None],
    background: list[threading.Thread],
) -> tuple[dict[str, EntryInfo], Harvest, list[str]]:
    """Entries for every locked package: kept, found in the store, repaired (``force``), or installed now.

    ``on_picked`` gets the entries kept as they are before uv runs (only when uv runs).
    """
    picked = _pick_entries(
        layout=layout,
        plan=plan,
        lock=lock,
        target=target,
        force=force,
        current_record=current_record,
        progress=progress,
    )
    if not picked.needed:
        return picked.entries, Harvest(entries={}, new_bytes=0, created=()), picked.reused
    check_install_space(layout.root, picked.needed)  # before uv: a full volume mid-install helps no one
    needed = {package.name for package in picked.needed}
    on_picked({name: info for name, info in picked.entries.items() if name not in needed})
    scratch = scratch_dir(layout, cache_dir)
    cleanup_stale_scratch(scratch)
    staging = new_local_staging(scratch, layout)
    try:
        _uv_install(
            layout=layout,
            packages=picked.needed,
            staging=staging,
            target=target,
            cache_dir=cache_dir,
            mirror=mirror,
            progress=progress,
        )
        rewrite_console_scripts(staging.target, python_version=target.version)  # before any entry is made from it
        interpreter = target.interpreter
        if interpreter is not None and compile_first():  # the order before the pipeline, kept to compare against
            progress.step("compiling bytecode")
            compile_bytecode(
                staging.target, interpreter=interpreter, python_version=target.version, log_dir=layout.logs_dir
            )
            interpreter = None
        crash_point("staged")
        harvested = _repair_and_store(
            layout=layout, staging=staging, picked=picked, target=target, interpreter=interpreter, progress=progress
        )
    finally:
        # Local disk, nobody else's: removed while the forest is completed and recorded, joined by install().
        background.append(remove_in_background(staging.root))
    picked.entries.update(harvested.entries)
    return picked.entries, harvested, picked.reused


@dataclass
class _Picked:
    entries: dict[str, EntryInfo]  # usable now
    needed: list[LockedPackage]  # to install with uv: new, unusable, or damaged
    reused: list[str]  # store entries linked without installing (checked again before the switch)
    repairs: dict[str, tuple[str, EntryHealth]]  # name -> (entry, damaged files), with --force
    unusable: set[str] = field(default_factory=set)  # names whose standard entry exists but cannot be used


def _pick_entries(
    *,
    layout: VolumeLayout,
    plan: InstallPlan,
    lock: CurrentLock,
    target: TargetPython,
    force: bool,
    current_record: GenerationRecord | None,
    progress: Progress,
) -> _Picked:
    locked = lock.info.by_name()
    recorded = {entry.entry: entry for entry in current_record.entries} if current_record else {}
    picked = _Picked(entries={}, needed=[], reused=[], repairs={})
    for change in plan.unchanged:
        info = recorded.get(change.entry or "")
        if info is None and change.entry:
            manifest = _usable_manifest(layout, change.entry)
            info = manifest.info if manifest else None
        if info is None:
            if (layout.store_dir / entry_key(locked[change.name], target.version)).exists():
                picked.unusable.add(change.name)
            picked.needed.append(locked[change.name])
        else:
            picked.entries[change.name] = info
    if force:
        progress.step(f"verifying {len(plan.to_install)} store entries against their RECORD hashes")
    for change in plan.to_install:
        package = locked[change.name]
        info = None
        if force:
            entry, health = _force_entry(layout, package, change.entry, target.version)
            info = health.info
            if info is not None and health.damaged:
                picked.repairs[change.name] = (entry, health)
                picked.needed.append(package)
        else:
            # Another project (or an older generation) may have it: link, do not install.
            standard = entry_key(package, target.version)
            manifest = _usable_manifest(layout, standard)
            for sibling in _rebuilt_siblings(layout, standard) if manifest is None else []:
                manifest = manifest or _usable_manifest(layout, sibling)
            info = manifest.info if manifest else None
        if info is None:
            if (layout.store_dir / entry_key(package, target.version)).exists():
                picked.unusable.add(package.name)
            picked.needed.append(package)
            continue
        os.utime(layout.store_dir / info.entry)  # young again: gc leaves it alone
        picked.entries[change.name] = info
        picked.reused.append(info.entry)
    return picked


def _rebuilt_siblings(layout: VolumeLayout, standard: str) -> list[str]:
    """Entries built again under a new name because ``standard`` was unusable (one store listing, rarely needed)."""
    if not (layout.store_dir / standard).exists():
        return []
    return sorted(
        name
        for name in os.listdir(layout.store_dir)
        if name != standard and name.startswith(standard) and base_key(name) == standard
    )


def _usable_manifest(layout: VolumeLayout, entry: str) -> EntryManifest | None:
    """The entry's manifest; None when it is absent or unreadable (the entry is then built again)."""
    try:
        return read_entry_manifest(layout, entry)
    except StateError:
        return None


def _repair_and_store(
    *,
    layout: VolumeLayout,
    staging: Staging,
    picked: _Picked,
    target: TargetPython,
    interpreter: Path | None,
    progress: Progress,
) -> Harvest:
    """Repair damaged entries in place from the staged copies, then store the rest as new entries.

    With ``interpreter`` the new entries' bytecode is compiled while they are stored.
    """
    repaired = tuple(
        name for name, (entry, health) in sorted(picked.repairs.items()) if repair_entry(layout, staging, entry, health)
    )
    if repaired:
        progress.info(f"repaired damaged files of {', '.join(repaired)} in place")
    rebuild = [package for package in picked.needed if package.name not in repaired]
    for package in rebuild:
        if package.name in picked.repairs:  # its RECORD disagrees with the wheel: not the entry it claims to be
            picked.reused.remove(picked.repairs[package.name][0])
            picked.unusable.add(package.name)
    # An entry built again takes a new name where an unusable one sits: a generation may still link that one.
    # (Not where a racing install just stored it: the first rename wins and the others use it.)
    keys = {
        package.name: entry_key(package, target.version, forced=package.name in picked.unusable) for package in rebuild
    }
    harvested = Harvest(entries={}, new_bytes=0, created=())
    if rebuild:
        progress.step(f"storing {len(rebuild)} distributions")  # their bytecode compiled meanwhile
        harvested = harvest(
            layout=layout,
            staging=staging,
            packages=rebuild,
            keys=keys,
            python_version=target.version,
            interpreter=interpreter,
        )
    return replace(harvested, repaired=repaired)


def _force_entry(
    layout: VolumeLayout, package: LockedPackage, installed: str | None, python_version: str
) -> tuple[str, EntryHealth]:
    """The store entry ``--force`` keeps for ``package``, verified file by file.

    The entry the generation links first (it may be a rebuild from an earlier
    ``--force``), then the standard one. Healthy entries are kept as they are,
    damaged ones are repaired in place; only one nothing can verify is rebuilt.
    """
    standard = entry_key(package, python_version)
    candidates = [installed] if installed and base_key(installed) == standard else []
    for entry in dict.fromkeys([*candidates, standard, *_rebuilt_siblings(layout, standard)]):
        health = inspect_entry(layout, entry)
        if health.info is not None:
            return entry, health
    return standard, EntryHealth(exists=False)


def _requirements_file(packages: list[LockedPackage], staging: Staging, target: TargetPython) -> Path:
    """One pinned, hashed line per package, written into the staging folder."""
    lines: list[str] = []
    for package in packages:
        artifact = package.artifact
        if package.wheel is None and target.interpreter is None:
            raise InstallError(
                f"{package.name}=={package.version} has no wheel for Python {target.version} and no Python "
                f"{target.version} interpreter is available to build its sdist",
                hint=f"install Python {target.version} on this machine, or pin a version of {package.name} with wheels",
            )
        digest = f" --hash=sha256:{artifact.sha256}" if artifact.sha256 else ""
        lines.append(f"{package.name} @ {artifact.url}{digest}")
    requirements = staging.root / "requirements.txt"
    requirements.write_text("\n".join(lines) + "\n")
    return requirements


def uv_install_command(
    uv: str,
    packages: list[LockedPackage],
    *,
    staging: Staging,
    requirements: Path,
    target: TargetPython,
    mirror: str | None,
) -> list[str]:
    """uv's command line for installing ``packages`` into the staging folder, without its dependencies."""
    command: list[str] = [
        uv,
        "pip",
        "install",
        "--no-config",
        "--target",
        str(staging.target),
        "--no-deps",
        # The staging folder is on local disk beside uv's cache: a hard link is free where a copy writes
        # every byte (10.7k files: 0.4-1.1 s against 3.5-7.2 s). Nothing rewrites a staged file in
        # place (scripts, RECORDs and bytecode are new files renamed over), and entries reach the
        # volume as copies, so the cache stays intact. A volume on this very disk gets the staged
        # files themselves (renamed into the store): they must then be uv's copies, not its cache's.
        "--link-mode",
        "copy" if staging.same_disk_as_volume else "hardlink",
        "-r",
        str(requirements),
    ]
    if all(package.artifact.sha256 for package in packages):
        command.append("--require-hashes")
    if target.interpreter is not None:
        command += ["--python", str(target.interpreter)]  # bytecode: deps/bytecode.py, hash-based
    else:
        command += [
            "--python",
            sys.executable,
            "--python-version",
            target.version,
            "--python-platform",
            UV_PLATFORM,
            "--only-binary",
            ":all:",
        ]
    if any(package.wheel is None for package in packages):
        # Building an sdist needs its build backend from an index.
        command += ["--default-index", mirror or PYPI_SIMPLE_URL]
    else:
        command.append("--no-index")
    return command


def _uv_install(
    *,
    layout: VolumeLayout,
    packages: list[LockedPackage],
    staging: Staging,
    target: TargetPython,
    cache_dir: Path,
    mirror: str | None,
    progress: Progress,
) -> None:
    requirements = _requirements_file(packages, staging, target)
    command = uv_install_command(
        uv_binary(), packages, staging=staging, requirements=requirements, target=target, mirror=mirror
    )
    progress.step(f"installing {len(packages)} distributions with uv")
    sizes = [package.artifact.size for package in packages]
    total_bytes = sum(size for size in sizes if size) if all(sizes) else None
    watcher = UvInstallWatcher(progress, cache_dir=cache_dir, packages=len(packages), total_bytes=total_bytes)
    task = progress.task("installed", total=len(packages), unit="packages")

    def on_line(line: str) -> None:
        # uv's summary lines ("Prepared 14 packages in 3.2s") repeat what the bars show; " + name"
        # lines come only once everything is unpacked, one per installed distribution.
        if line.startswith(" + "):
            task.advance()

    with tempfile.TemporaryDirectory(prefix="volume-cli-uv-") as config_home:
        env = uv_environment(cache_dir=cache_dir, config_home=Path(config_home))
        try:
            with watcher:
                run(
                    command, label="uv-pip-install", env=env, cwd=staging.root, on_line=on_line, log_dir=layout.logs_dir
                )
        except SubprocessError as exc:
            raise_for_network(exc)
            culprit = failing_package(exc.tail, [package.name for package in packages])
            about = f" ({culprit})" if culprit else ""
            raise InstallError(
                f"installing failed{about}; the current generation was kept:\n" + error_excerpt(exc.tail),
                hint=f"full log: {exc.log_path}" if exc.log_path else None,
            ) from exc
        finally:
            task.finish()


def _intended_entries(plan: InstallPlan, lock: CurrentLock, python_version: str) -> list[str]:
    """Every entry this install may create or link, as base keys (a forced rebuild adds a suffix)."""
    names = [entry_key(package, python_version) for package in lock.info.packages]
    return names + [base_key(change.entry) for change in plan.unchanged if change.entry]


def _has_hook(project: ProjectDefinition) -> bool:
    return project.plugin is not None and type(project.plugin).after_install is not Project.after_install


def _hook_due(project: ProjectDefinition, state: ProjectState | None, generation: str) -> bool:
    """The hook never finished for the current generation (failed, killed, or never run)."""
    record = state.after_install if state else None
    return _has_hook(project) and (record is None or record.generation != generation or not record.ok)


def _follow_up_due(
    layout: VolumeLayout, project: ProjectDefinition, state: ProjectState | None, generation: str
) -> bool:
    """Whether the no-op fast path must not be taken: what follows a switch is not done yet."""
    if _hook_due(project, state, generation):
        return True
    if not project.models and (state is None or state.models is None):
        return True
    return not (boot_path(layout.root, project.name, project.python_version) / "sitecustomize.py").is_file()


def _follow_up(layout: VolumeLayout, project: ProjectDefinition, generation: str, *, only_if_due: bool) -> None:
    """After ``generation`` became current: the workers' boot folder, the models record, the hook."""
    from volume_cli.consumer_env import write_boot

    write_boot(layout, project.name, project.python_version)
    state = read_project_state(layout, project.name)
    if not project.models and not _no_models_recorded(state):
        # Nothing to download: recorded so that a worker's start-up check passes after `deps install` alone.
        from volume_cli.models.download import record_project_models  # the models engine: ~0.1 s of imports

        record_project_models(layout, project)  # changes state.models only: the hook's record read above holds
    if only_if_due and not _hook_due(project, state, generation):
        return
    _run_hook(layout, project, generation)


def _no_models_recorded(state: ProjectState | None) -> bool:
    """state.json already says "no models": what ``record_project_models`` writes for a project without any."""
    return (
        state is not None and state.models is not None and not state.models.model_keys and not state.models.size_bytes
    )


def _record_hook(layout: VolumeLayout, project: ProjectDefinition, record: HookRecord) -> None:
    update_project_state(
        layout, project.name, project.python_version, lambda state: state.model_copy(update={"after_install": record})
    )


def _run_hook(layout: VolumeLayout, project: ProjectDefinition, generation: str) -> None:
    """Run the plugin's after_install; its outcome is recorded so a failure is retried and reported.

    "Started" is recorded first: a run killed inside the hook leaves a record
    that says it did not finish, so workers and the next install know.
    """
    if project.plugin is None or not _has_hook(project):
        return
    context = project.hook_context(layout)
    _record_hook(layout, project, HookRecord(generation=generation, ok=False, finished_at=utc_now()))
    try:
        project.plugin.after_install(context)
    except (Exception, SystemExit) as exc:  # sys.exit() in a hook must not end the CLI silently
        error = f"{type(exc).__name__}: {exc}"
        _record_hook(layout, project, HookRecord(generation=generation, ok=False, finished_at=utc_now(), error=error))
        raise InstallError(
            f"{project.name}: generation {generation} is installed, but the plugin's after_install hook failed: "
            f"{error}",
            hint=f"fix {project.definition_file}, then run: volume-cli deps install --project {project.name}",
        ) from exc
    _record_hook(layout, project, HookRecord(generation=generation, ok=True, finished_at=utc_now()))
