"""A worker's copy of its dependency generation on local disk, made once per generation.

Standard library only: volume-cli copies this file as ``volume_cli_local_copy.py``
next to the boot ``sitecustomize.py`` and the runtime copy, which load it by path.

Why: on a network volume every file-system call is a round trip, and a cold
``import`` makes several per module (lookups, opens, reads, and a readlink
for each step through the generation's symlinks into ``.store``). Reading
the generation once, with many threads spread across folders, onto the
worker's own disk, then importing from there, pays the round trips
concurrently, once per generation and machine instead of serially at every
start. Reading it file by file still costs ~7 round trips per file (18.7k
files: 131k operations), so each store entry also has a pack written at
install time (one file: index and contents, see ``write_pack``); the copy
unpacks the entries that have a usable one (~45 large files instead of
18.7k: 4.4k operations) and copies only the others file by file, from the
store, into the same copy. See docs/concepts.md ("Workers import from a
local copy").

Rules: a copy is built in a private temp folder and published by one rename;
it is used only when its marker (written last, naming the generation, its
file count and bytes) is there; every wait is bounded; any problem means the
volume path is used, with one line on stderr; a process holds a shared
``flock`` on the marker of the copy it imports from (local disk: flock is
trustworthy there), so pruning never removes a copy a running process uses.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import itertools
import json
import mmap
import os
import shutil
import stat
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from concurrent.futures import Future, ThreadPoolExecutor

COPY_ENV = "VOLUME_CLI_LOCAL_COPY"  # "0" never copies; "1" copies even onto the volume's own file system
MAX_MB_ENV = "VOLUME_CLI_LOCAL_COPY_MAX_MB"
# Unless VOLUME_CLI_LOCAL_COPY_MAX_MB says otherwise, a copy may take the larger of this and half the
# free space of the cache's disk. Above it, big native libraries are linked to the store instead of
# copied (packs of format 2), and when even the rest is above it the volume is used. A CUDA build of
# torch (5.3 GB) measured on the simulated volume: copied whole, a first start took 14.4 s and a later
# one 3.2 s; with its libraries linked, 17-23 s and 14.5 s; from the volume 32-34 s (docs/performance.md).
DEFAULT_MAX_MB = 2048
TIMEOUT_ENV = "VOLUME_CLI_LOCAL_COPY_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 300.0  # bounds both building a copy and waiting for another process's
THREADS = 32  # concurrent round trips; the kernel serialises calls within one folder, so work spans folders
MARKER = ".volume-cli-copy.json"
COPIES = "deps"
TEMP_PREFIX = ".tmp-"
STOP_WAIT_SECONDS = 2.0  # how long a failed copy waits for its running tasks before removing its folder
TRASH_PREFIX = ".trash-"  # as volume_cli.fileops.TRASH_PREFIX (this file is standard-library only)
SKIP_SUFFIX = ".skip"
LOCK_SUFFIX = ".lock"
FREE_SPACE_KEPT = 256 * 1024 * 1024  # a copy never leaves the worker's disk with less than this
POLL_SECONDS = 0.02

# The next piece of work of a copy: (source folder, target folder, None) scans a folder;
# (source folder, target folder, ((source name, target name), ...)) copies those files.
Task = tuple[str, str, "tuple[tuple[str, str], ...] | None"]
FILES_PER_TASK = 16  # one folder lookup on the volume per task, then one lookup per file (openat)

# Marker descriptors this process holds a shared lock on: kept open for its whole life.
_HELD: list[int] = []


class CopySkipped(Exception):
    """Why the volume path is used instead of a local copy."""


class CopyTooBig(CopySkipped):
    """The copy needs at least ``needed`` bytes (its big libraries linked), more than the ceiling or the free space."""

    def __init__(self, needed: int, budget: int) -> None:
        super().__init__(f"the generation is over {budget >> 20} MB ({MAX_MB_ENV} or free space)")
        self.needed = needed


def local_generation(generation: str, *, project: str, python_version: str, cache: str) -> str:
    """The folder to pin for ``generation``: its complete local copy under ``cache``, else ``generation``.

    Never raises: on any problem the volume path is returned and one line says why on stderr.
    """
    mode = os.environ.get(COPY_ENV, "").strip()
    if mode == "0":
        return generation
    try:
        if mode != "1" and _same_file_system(generation, cache):
            return generation  # a copy onto the disk the volume is on gains nothing
        folder = copies_folder(cache, generation, project, python_version)
        copy = _use_or_build(folder, generation)
    except Exception as exc:  # a speed-up must never stop a worker: anything unforeseen means the volume path
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        sys.stderr.write(
            f"volume-cli: importing from the volume, not a local copy: {why} "
            f"(next: see 'local copy' in volume-cli's docs/troubleshooting.md, or set {COPY_ENV}=0)\n"
        )
        return generation
    try:
        prune(folder, keep=os.path.basename(generation))
    except Exception:
        pass  # pruning is housekeeping: the copy is held and whole either way
    return copy


def copies_folder(cache: str, generation: str, project: str, python_version: str) -> str:
    """One folder per project, Python and volume (two volumes may both have a generation of that name)."""
    volume_side = os.path.dirname(generation)
    return os.path.join(cache, COPIES, f"{project}-py{python_version}-{zlib.crc32(volume_side.encode()):08x}")


def copy_source(folder: str) -> str | None:
    """The volume generation ``folder`` is a complete copy of, or None (not a copy)."""
    try:
        with open(os.path.join(folder, MARKER), "rb") as stream:
            source = json.loads(stream.read()).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    return source if isinstance(source, str) else None


def _same_file_system(generation: str, cache: str) -> bool:
    existing = cache
    while not os.path.isdir(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            return False
        existing = parent
    return os.stat(generation).st_dev == os.stat(existing).st_dev


def _deadline() -> float:
    try:
        seconds = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_SECONDS)
    except ValueError:
        seconds = DEFAULT_TIMEOUT_SECONDS
    return time.monotonic() + seconds


def _use_or_build(folder: str, generation: str) -> str:
    name = os.path.basename(generation)
    target = os.path.join(folder, name)
    if _hold(target, generation):
        return target
    _check_size_note(os.path.join(folder, name + SKIP_SUFFIX), name)
    os.makedirs(folder, exist_ok=True)
    deadline = _deadline()
    lock = os.open(os.path.join(folder, name + LOCK_SUFFIX), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not _flock(lock, fcntl.LOCK_EX, deadline):
            raise CopySkipped(f"another process is still copying {name} after the time limit ({TIMEOUT_ENV})")
        if not _hold(target, generation):  # nobody finished it while this process waited
            _build(folder, generation, deadline)
            if not _hold(target, generation):
                raise CopySkipped(f"the copy of {name} vanished right after it was made")
    finally:
        os.close(lock)  # releases the builder lock
    return target


def _check_size_note(note: str, name: str) -> None:
    """Skip at once a generation known to be over the ceiling, without reading its record again."""
    try:
        with open(note) as stream:
            size = int(stream.read().split()[0])
    except FileNotFoundError:
        return
    except (OSError, ValueError, IndexError):
        size = 0  # unreadable: decide again from the record
    ceiling = _max_bytes(os.path.dirname(note))
    if size > ceiling:
        raise CopySkipped(_over_ceiling(name, size, ceiling))


def _over_ceiling(name: str, size: int, ceiling: int) -> str:
    return f"{name} has {size >> 20} MB, over the {ceiling >> 20} MB ceiling ({MAX_MB_ENV})"


def _flock(fd: int, operation: int, deadline: float) -> bool:
    """Take ``operation`` on ``fd``, polling until ``deadline``: never a wait that can hang."""
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)


def _hold(target: str, generation: str) -> bool:
    """Whether ``target`` is a complete copy of ``generation``; if so, keep a shared lock on it for life."""
    marker = os.path.join(target, MARKER)
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        # A pruner holds the exclusive lock only while it renames the copy away: a short wait.
        if _flock(fd, fcntl.LOCK_SH, time.monotonic() + 5.0):
            with os.fdopen(os.dup(fd), "rb") as stream:
                recorded = json.loads(stream.read())
            # Still this copy at this name, after the lock (a pruner renames it before removing it).
            if recorded.get("source") == generation and os.stat(marker).st_ino == os.fstat(fd).st_ino:
                _HELD.append(fd)
                return True
    except (OSError, ValueError, AttributeError):
        pass
    os.close(fd)
    return False


def _recorded_entries(generation: str) -> list[dict[str, object]] | None:
    """The generation's entries from its install record on the volume (one small read), or None."""
    project_folder = os.path.dirname(generation)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(project_folder))))
    record = os.path.join(
        root, ".metadata", "projects", os.path.basename(project_folder), "generations", os.path.basename(generation)
    )
    try:
        with open(record + ".json", "rb") as stream:
            entries = json.loads(stream.read())["entries"]
        sum(int(entry["size_bytes"]) for entry in entries)  # a record it cannot read is no record
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return entries if isinstance(entries, list) else None


def _max_bytes(folder: str) -> int:
    """The copy's ceiling: ``MAX_MB_ENV``, else the larger of DEFAULT_MAX_MB and half the free space of ``folder``'s disk."""
    with contextlib.suppress(ValueError):
        return int(float(os.environ.get(MAX_MB_ENV, "").strip()) * 1024 * 1024)
    floor = DEFAULT_MAX_MB * 1024 * 1024
    try:
        return max(floor, shutil.disk_usage(folder).free // 2)
    except OSError:
        return floor


def _build(folder: str, generation: str, deadline: float) -> None:
    """Copy ``generation`` into a private temp folder, write the marker last, publish by one rename."""
    name = os.path.basename(generation)
    _remove_leftovers(folder, name)
    ceiling, entries = _max_bytes(folder), _recorded_entries(generation)
    expected = None if entries is None else sum(int(str(entry["size_bytes"])) for entry in entries)
    free = shutil.disk_usage(folder).free - FREE_SPACE_KEPT
    budget = min(ceiling, free)
    packs = _usable_packs(generation, entries)
    if expected is not None and expected > budget and packs is None:
        _too_big(folder, name, expected, ceiling, free)  # with packs, linking big libraries may make it fit
    temp = os.path.join(folder, f"{TEMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}")
    os.mkdir(temp)
    try:
        files, size, linked = _fill(generation, temp, budget, deadline, entries, packs)
        with open(os.path.join(temp, MARKER), "w") as stream:
            record = {"format": 1, "generation": name, "source": generation, "files": files, "bytes": size}
            json.dump({**record, "linked": linked}, stream)
        os.rename(temp, os.path.join(folder, name))
    except CopyTooBig as big:
        shutil.rmtree(temp, ignore_errors=True)
        _too_big(folder, name, big.needed, ceiling, free)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        # Another builder published first (its lock file was replaced under it): its copy is used.
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _too_big(folder: str, name: str, needed: int, ceiling: int, free: int) -> None:
    """Raise why a copy of ``needed`` bytes is not made; over the ceiling, later starts skip at once."""
    if needed > ceiling:
        with open(os.path.join(folder, name + SKIP_SUFFIX), "w") as note:
            note.write(f"{needed}\n")  # the size: a ceiling raised later lets the copy happen
        raise CopySkipped(_over_ceiling(name, needed, ceiling))
    raise CopySkipped(f"{name} needs {needed >> 20} MB and {folder} has {max(free, 0) >> 20} MB to spare")


def _fill(
    generation: str,
    temp: str,
    budget: int,
    deadline: float,
    entries: list[dict[str, object]] | None,
    packs: dict[str, tuple[str, int, str]] | None,
) -> tuple[int, int, int]:
    """Fill the empty ``temp`` with the generation: each entry from its pack when it has a usable one, else file by file.

    Files and bytes copied, and libraries linked to the store. A pack found bad while unpacking (torn,
    altered, unreadable) is left out and the copy made again, that entry's files copied one by one:
    the others still come from their packs.
    """
    if packs is None:
        return (*TreeCopy(generation, temp, budget, deadline).run(), 0)
    store = _store_of(generation)
    names = [str(entry["entry"]) for entry in entries or []]
    while True:
        folders = {name: os.path.join(store, name) for name in names if name not in packs}
        try:
            unpack = PackUnpack(packs, temp, budget, deadline, folders=folders, store=store)
            return (*unpack.run(), unpack.linked)
        except PackFailed as failed:
            sys.stderr.write(
                f"volume-cli: copying {failed.entry} of {os.path.basename(generation)} file by file, "
                f"not from packs: {failed.why}\n"
            )
            packs = {entry: found for entry, found in packs.items() if entry != failed.entry}
            shutil.rmtree(temp)
            os.mkdir(temp)


def _usable_packs(generation: str, entries: list[dict[str, object]] | None) -> dict[str, tuple[str, int, str]] | None:
    """The packs of the entries that have one, when the record's entries are exactly what the generation shows.

    None (the generation is copied as it is, file by file) when packs are turned off or the record
    does not describe the generation; the entries without a pack are copied file by file from the store.
    """
    if os.environ.get(PACKS_ENV, "").strip() == "0" or not entries:
        return None
    try:
        names = {str(item["name"]) for entry in entries for item in entry["top_level"]}  # type: ignore[attr-defined]
        if names != set(os.listdir(generation)):
            return None  # a generation its record does not describe (made by hand, or an older tool)
        stored = [str(entry["entry"]) for entry in entries]
        if any(not name or name in (".", "..") or "/" in name or "\0" in name for name in stored):
            return None  # an entry name that is not one folder of the store
        return generation_packs(generation, stored)
    except (OSError, KeyError, TypeError):
        return None


def _remove_leftovers(folder: str, name: str) -> None:
    """A killed builder's temp folder and a torn copy (no valid marker): the builder lock is held."""
    for item in os.listdir(folder):
        if item.startswith(f"{TEMP_PREFIX}{name}-"):
            _discard(os.path.join(folder, item))
    target = os.path.join(folder, name)
    if os.path.lexists(target):
        if _in_use(target):  # never pull a copy from under a running process, whatever its marker says
            raise CopySkipped(f"{target} is in use but does not match {name} on the volume")
        _discard(target)


def _in_use(copy: str) -> bool:
    try:
        fd = os.open(os.path.join(copy, MARKER), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no marker: no process can hold it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _discard(path: str) -> None:
    """Rename aside, then remove: a half-removed copy never sits under a generation's name."""
    trash = os.path.join(os.path.dirname(path), f"{TRASH_PREFIX}{uuid.uuid4().hex[:12]}")
    try:
        os.rename(path, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


TaskT = TypeVar("TaskT")


def _drain(
    do: Callable[[TaskT], list[TaskT]],
    first: list[TaskT],
    deadline: float,
    stopped: threading.Event,
    check: Callable[[], None],
) -> None:
    """``do`` each of ``first`` and every task it returns, THREADS at a time, ``check`` after each; bounded by ``deadline``."""
    # Imported here: a start that finds its copy made pays nothing for threads.
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(THREADS)
    pending: set[Future[list[TaskT]]] = set()
    try:
        pending = {pool.submit(do, task) for task in first}
        while pending:
            left = max(deadline - time.monotonic(), 0.0)
            done, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            if not done:
                raise CopySkipped(f"copying took longer than the time limit ({TIMEOUT_ENV})")
            for future in done:
                pending.update(pool.submit(do, task) for task in future.result())
            check()
    finally:
        # Tasks still running stop at their next file and get a moment to, so the caller's removal
        # of the temp folder is not raced by late writes; never longer: a copy abandoned on a hung
        # volume must not hold up the import (a leftover is removed by the next builder).
        stopped.set()
        pool.shutdown(wait=False, cancel_futures=True)
        # (a future cancelled by the shutdown never counts as done for wait(): only running ones)
        wait([future for future in pending if not future.cancelled()], timeout=STOP_WAIT_SECONDS)


class TreeCopy:
    """Copy a generation (following its links into the store) with many concurrent round trips.

    With ``first``, only those tasks (and what they lead to) are done: the files of the entries
    that have no pack, in folders made already (``PackUnpack``).
    """

    def __init__(
        self, source: str, target: str, budget: int, deadline: float, *, first: list[Task] | None = None
    ) -> None:
        self.source, self.target, self.budget, self.deadline = source, target, budget, deadline
        self.first: list[Task] = [(source, target, None)] if first is None else first
        # Links may lead anywhere under python-deps/ (the store), never out of it.
        self.allowed = os.path.realpath(os.path.join(source, "..", "..", "..", "..")) + os.sep
        self.files = 0
        self.bytes = 0
        self.counting = threading.Lock()
        self.stopped = threading.Event()

    def run(self) -> tuple[int, int]:
        _drain(self._do, self.first, self.deadline, self.stopped, self._check_budget)
        return self.files, self.bytes

    def _check_budget(self) -> None:
        if self.bytes > self.budget:
            raise CopySkipped(f"the generation is over {self.budget >> 20} MB ({MAX_MB_ENV} or free space)")

    def _do(self, task: Task) -> list[Task]:
        if self.stopped.is_set():
            return []
        source, target, files = task
        return self._scan(source, target) if files is None else self._copy_files(source, target, files)

    def _scan(self, source: str, target: str) -> list[Task]:
        """Make one folder's copy; its subfolders and batches of its files are the next tasks."""
        if target != self.target:
            os.mkdir(target)
        tasks: list[Task] = []
        files: list[tuple[str, str]] = []
        folder = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        tasks.append(self._followed(os.path.join(source, entry.name), os.path.join(target, entry.name)))
                    elif entry.is_dir(follow_symlinks=False):
                        tasks.append((os.path.join(source, entry.name), os.path.join(target, entry.name), None))
                    else:
                        files.append((entry.name, entry.name))
        finally:
            os.close(folder)
        batches = range(0, len(files), FILES_PER_TASK)
        return tasks + [(source, target, tuple(files[first : first + FILES_PER_TASK])) for first in batches]

    def _followed(self, link: str, target: str) -> Task:
        """The task for what a link of the forest leads to: a folder or a file in the store."""
        path = os.path.realpath(link)
        if not path.startswith(self.allowed):
            raise CopySkipped(f"{link} leads out of the volume's python-deps folder")
        if os.path.isdir(path):
            return (path, target, None)
        return (os.path.dirname(path), os.path.dirname(target), ((os.path.basename(path), os.path.basename(target)),))

    def _copy_files(self, source: str, target: str, files: tuple[tuple[str, str], ...]) -> list[Task]:
        """Copy a batch of one folder's files, each opened relative to the folder: one lookup per file."""
        folder = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name, new_name in files:
                if self.stopped.is_set() or time.monotonic() > self.deadline or self.bytes > self.budget:
                    return []  # the run is being abandoned
                size = self._copy_file(folder, name, os.path.join(target, new_name))
                with self.counting:
                    self.files += 1
                    self.bytes += size
        finally:
            os.close(folder)
        return []

    def _copy_file(self, folder: int, name: str, target: str) -> int:
        # O_NONBLOCK: a FIFO planted in the volume must not hang the start.
        reader = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
        try:
            status = os.fstat(reader)
            if not stat.S_ISREG(status.st_mode):
                raise CopySkipped(f"{name} in {self.source} is not a regular file")
            writer = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, status.st_mode & 0o777)
            try:
                offset = 0
                while offset < status.st_size:
                    sent = os.sendfile(writer, reader, offset, status.st_size - offset)
                    if sent == 0:
                        raise OSError(f"{name} is shorter than its size")
                    offset += sent
                # Timestamp-based bytecode is checked against the source's mtime: keep it.
                os.utime(writer, ns=(status.st_atime_ns, status.st_mtime_ns))
            finally:
                os.close(writer)
        finally:
            os.close(reader)
        return status.st_size


# -- packs: one file per store entry, written at publish time, unpacked onto local disk -----------
#
# <python-deps>/.packs/<entry>.<size>.<sha256>.pack: a header line, the index's length, the index
# (JSON: folders, files with mode, size and mtime, in-entry links) and every file's bytes in index
# order, uncompressed (zlib level 1 took 181 MB from 556 MB but cost 3.7 s of CPU to inflate on a
# worker, where reading the 556 MB from the simulated volume, 8 packs at a time, took 0.8 s). The
# name carries the size and sha256 the install recorded: a pack is used only whole and unchanged.
PACKS = ".packs"
PACK_SUFFIX = ".pack"
PACK_MAGIC = b"volume-cli-pack 1\n"
# Format 2 adds "libraries" to the index: an entry's big native libraries, listed (mode, size, mtime)
# but left out of its bytes. A copy under the ceiling copies them from the store entry; a generation
# over it links them there and copies the rest: a CUDA build of torch is 4.6 GB of such libraries of
# its 5.3 GB, of which an import maps in a small part. A pack without any stays format 1, which every
# volume-cli reads; an older worker finds a format-2 pack unusable and copies that entry file by file.
PACK_MAGIC_LIBRARIES = b"volume-cli-pack 2\n"
LIBRARY_MIN_BYTES = 16 << 20  # CUDA torch: 30 libraries, 4.67 GB of 5.26; 8-16 MB holds none there
PACKS_ENV = "VOLUME_CLI_LOCAL_COPY_PACKS"  # "0" copies file by file even where packs exist
PACK_CHUNK = 1 << 20
# A big pack is read in segments by several threads at once: one reader of one file gets ~190 MB/s from
# the simulated volume, 8 readers of parts of it ~700 MB/s (numpy's 71 MB pack alone took 0.5-0.9 s).
SEGMENT_BYTES = 8 << 20
SEGMENTS_AHEAD = 4  # per pack: bounds the memory a big pack holds while it is unpacked
MAX_INDEX_BYTES = 64 << 20


class PackUnusable(Exception):
    """A pack that is torn, altered or names something outside its entry: the files are copied instead."""


def pack_name(entry: str, size: int, digest: str) -> str:
    return f"{entry}.{size}.{digest}{PACK_SUFFIX}"


def parse_pack_name(name: str) -> tuple[str, int, str] | None:
    """(entry, size, sha256) from a pack's file name, or None (a temp file, or not a pack)."""
    if not name.endswith(PACK_SUFFIX) or name.startswith("."):
        return None
    parts = name[: -len(PACK_SUFFIX)].rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[2]) != 64:
        return None
    return parts[0], int(parts[1]), parts[2]


def write_pack(source: str, packs: int, entry: str, *, skip: frozenset[str] = frozenset(), readers: int = 1) -> str:
    """Pack the folder ``source`` (but its top-level names in ``skip``) as ``entry``'s pack; its name.

    ``packs`` is a handle of the packs folder: each call there looks up one name, not the
    whole path. Written under a temp name and renamed: a pack under its final name is whole.
    ``readers``: files read ahead by that many threads (a source on a network volume, where
    each file costs round trips: ``sync apply``); one reads them in turn (local disk).
    """
    import hashlib

    folders, files, links = _pack_members(source, skip)
    libraries = [item for item in files if is_big_library(item[0], item[2])]
    files = [item for item in files if not is_big_library(item[0], item[2])]
    members: dict[str, object] = {"folders": folders, "files": files, "links": links}
    magic = PACK_MAGIC_LIBRARIES if libraries else PACK_MAGIC
    if libraries:
        members["libraries"] = libraries
    index = json.dumps(members, separators=(",", ":")).encode()
    digest = hashlib.sha256()
    temp = f"{TEMP_PREFIX}{entry}-{uuid.uuid4().hex[:8]}"
    size = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with open(os.open(temp, flags, 0o644, dir_fd=packs), "wb", buffering=PACK_CHUNK) as stream:
            for part in (magic, b"%d\n" % len(index), index):
                stream.write(part)
                digest.update(part)
                size += len(part)
            for data in _member_bytes(source, files, readers):
                stream.write(data)
                digest.update(data)
                size += len(data)
        final = pack_name(entry, size, digest.hexdigest())
        os.rename(temp, final, src_dir_fd=packs, dst_dir_fd=packs)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=packs)
        raise
    return final


def holds_big_libraries(path: str, size: int, digest: str) -> bool:
    """Whether the pack at ``path`` (of ``size`` and ``digest``, from its name) holds a big library's bytes.

    Only a pack written before packs left them out (format 1) does. It still works, but a copy over the
    ceiling cannot link those libraries; ``sync apply`` rewrites it
    (``volume_cli.sync.apply.pack_current_generation``). A pack its index cannot be read from is not one.
    """
    pack = _Pack("", path, size, digest, chunks=_Buffers(lambda: PACK_CHUNK), segments=_Buffers(lambda: SEGMENT_BYTES))
    try:
        pack.open()  # the header and index only, checked as a worker checks them
        return any(is_big_library(item[0], item[2]) for item in pack.files)
    except (OSError, PackUnusable):
        return False
    finally:
        pack.close()


def is_shared_library(name: str) -> bool:
    """A native shared library by its file name (``libx.so``, ``libx.so.12``)."""
    return name.endswith(".so") or ".so." in name


def is_big_library(path: str, size: int) -> bool:
    """A native library a pack lists but leaves in its store entry (``PACK_MAGIC_LIBRARIES``)."""
    return size >= LIBRARY_MIN_BYTES and is_shared_library(path.rsplit("/", 1)[-1])


def _member_bytes(source: str, files: list[tuple[str, int, int, int]], readers: int) -> Iterator[bytes]:
    """Each file's bytes in index order; with ``readers`` > 1, up to twice that many files read ahead,
    each opened through its folder's handle (one lookup on a volume, not one per part of its path)."""
    if readers <= 1:
        yield from (_read_member(source, None, item) for item in files)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(readers)
    handles = _FolderHandles(source)
    pending = iter(files)
    try:
        ahead = deque(
            (item, pool.submit(_read_member, source, handles, item)) for item in itertools.islice(pending, 2 * readers)
        )
        while ahead:
            item, reading = ahead.popleft()
            data = reading.result()
            ahead.extend(
                (later, pool.submit(_read_member, source, handles, later)) for later in itertools.islice(pending, 1)
            )
            folder = os.path.dirname(item[0])
            if not ahead or os.path.dirname(ahead[0][0][0]) != folder:
                handles.done(folder)  # files come folder by folder: every read of this one has ended
            yield data
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a read still running ends before the caller goes on
        handles.close()


def _read_member(source: str, handles: _FolderHandles | None, item: tuple[str, int, int, int]) -> bytes:
    path, _, length, _ = item
    if handles is None:
        opened = os.open(os.path.join(source, path), os.O_RDONLY | os.O_CLOEXEC)
    else:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        opened = os.open(os.path.basename(path), flags, dir_fd=handles.of(os.path.dirname(path)))
    with open(opened, "rb", buffering=0) as stream:
        data = stream.read(length + 1)
    if len(data) != length:
        raise OSError(f"{path} changed size while its entry was packed")
    return data


class _FolderHandles:
    """A handle on each folder whose files are being read, opened once, closed after its last file."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.handles: dict[str, int] = {}
        self.lock = threading.Lock()

    def of(self, folder: str) -> int:
        with self.lock:
            handle = self.handles.get(folder)
            if handle is None:
                path = os.path.join(self.source, folder) if folder else self.source
                handle = self.handles[folder] = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            return handle

    def done(self, folder: str) -> None:
        with self.lock:
            handle = self.handles.pop(folder, None)
        if handle is not None:
            os.close(handle)

    def close(self) -> None:
        with self.lock:
            for handle in self.handles.values():
                os.close(handle)
            self.handles.clear()


def _pack_members(
    source: str, skip: frozenset[str]
) -> tuple[list[str], list[tuple[str, int, int, int]], list[tuple[str, str]]]:
    folders: list[str] = []
    files: list[tuple[str, int, int, int]] = []
    links: list[tuple[str, str]] = []
    pending = [""]
    while pending:
        relative = pending.pop()
        # Listed through a handle: each child's stat looks up one name (on a volume, not its whole path).
        folder = os.open(
            os.path.join(source, relative) if relative else source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        )
        try:
            with os.scandir(folder) as entries:
                children = sorted(entries, key=lambda child: child.name)
            for child in children:
                if not relative and child.name in skip:
                    continue
                path = f"{relative}/{child.name}" if relative else child.name
                info = child.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    links.append((path, os.readlink(child.name, dir_fd=folder)))
                elif stat.S_ISDIR(info.st_mode):
                    folders.append(path)
                    pending.append(path)
                elif stat.S_ISREG(info.st_mode):
                    files.append((path, stat.S_IMODE(info.st_mode), info.st_size, info.st_mtime_ns))
        finally:
            os.close(folder)
    folders.sort(key=lambda path: (path.count("/"), path))  # parents first
    return folders, files, links


def generation_packs(generation: str, entries: list[str]) -> dict[str, tuple[str, int, str]]:
    """The pack (path, size, sha256) of each of ``entries`` that has one (none when the folder is unreadable)."""
    folder = os.path.join(os.path.dirname(_store_of(generation)), PACKS)
    found: dict[str, tuple[str, int, str]] = {}
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return {}
    wanted = set(entries)
    for name in names:
        parsed = parse_pack_name(name)
        if parsed is not None and parsed[0] in wanted and parsed[0] not in found:
            found[parsed[0]] = (os.path.join(folder, name), parsed[1], parsed[2])
    return found


def _store_of(generation: str) -> str:
    """<python-deps>/.store for a generation at <python-deps>/pyX.Y/.generations/<project>/<generation>."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(generation)))), ".store")


def _member(path: object) -> str:
    """A member path that stays inside the copy: relative, no empty, '.' or '..' part, not the marker."""
    if not isinstance(path, str) or not path or "\0" in path or path.startswith("/"):
        raise PackUnusable(f"member {path!r} is not a relative path")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts) or parts[0] == MARKER:
        raise PackUnusable(f"member {path!r} would leave its folder")
    return path


def _link_text(path: str, text: object) -> str:
    # Without '..' a relative link can only lead below its own folder, through any chain of such links.
    if not isinstance(text, str) or not text or "\0" in text or text.startswith("/") or ".." in text.split("/"):
        raise PackUnusable(f"link {path!r} -> {text!r} may lead out of its entry")
    return text


class _Buffers:
    """Read buffers of one size, reused: a copy touches the memory of the reads it has in flight, once.

    Each read into a new buffer faults its pages in, and on a VM that hands freed memory back to
    its host (virtio-balloon free page reporting) each fault is the host's too: 360 MB read into
    fresh 8 MB buffers cost ~1.2 s of kernel time here, into reused ones ~0.2 s. A new buffer is an
    anonymous mapping, not a bytearray, which the process would first zero itself (a memset of
    every byte before the reads fault the pages in: 6.6% of a first start's CPU in ``perf``).
    """

    def __init__(self, size: Callable[[], int]) -> None:
        self._size = size  # read at each new buffer: tests shrink SEGMENT_BYTES
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def get(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, self._size())

    def put(self, buffer: mmap.mmap) -> None:
        with self._lock:
            self._free.append(buffer)


class _Pack:
    """One entry's pack on the volume, read front to back once, its sha256 computed on the way.

    Its bytes are read into reused buffers (``chunks``; a big pack's segments, read ahead by
    ``readers``, into ``segments``) and written out from them (``stream``): no copy per file.
    """

    def __init__(self, entry: str, path: str, size: int, digest: str, *, chunks: _Buffers, segments: _Buffers) -> None:
        import hashlib

        self.entry, self.path, self.size, self.digest = entry, path, size, digest
        self.chunks, self.segments = chunks, segments
        self.hasher = hashlib.sha256()
        self.current = memoryview(b"")  # the bytes read and hashed, not yet taken
        self.owned: tuple[_Buffers, mmap.mmap] | None = None  # the buffer ``current`` lies in
        self.read = 0
        self.offset = 0  # where the next read starts
        self.ahead: deque[Future[tuple[mmap.mmap, int]]] = deque()
        self.readers: ThreadPoolExecutor | None = None
        self.fd = -1
        self.busy = False  # a thread is reading it
        self.folders: list[str] = []
        self.files: list[tuple[str, int, int, int]] = []
        self.links: list[tuple[str, str]] = []
        self.libraries: list[tuple[str, int, int, int]] = []  # left in the store entry (format 2)

    def open(self) -> None:
        """Open it and read its index (checked member by member)."""
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        status = os.fstat(self.fd)
        if not stat.S_ISREG(status.st_mode) or status.st_size != self.size:
            raise PackUnusable(f"{self.path} is not the {self.size} bytes its install recorded")
        magic, length = self.take(len(PACK_MAGIC)), b""
        while not length.endswith(b"\n") and len(length) <= 21:
            length += self.take(1)
        sized = length.endswith(b"\n") and length[:-1].isdigit() and int(length[:-1]) <= MAX_INDEX_BYTES
        if magic not in (PACK_MAGIC, PACK_MAGIC_LIBRARIES) or not sized:
            raise PackUnusable(f"{self.path} is not a volume-cli pack")
        try:
            index = json.loads(self.take(int(length[:-1])))
            self.folders = [_member(path) for path in index["folders"]]
            self.files = [(_member(p), int(m) & 0o777, int(s), int(t)) for p, m, s, t in index["files"]]
            self.links = [(_member(path), _link_text(path, text)) for path, text in index["links"]]
            if magic == PACK_MAGIC_LIBRARIES:
                self.libraries = [(_member(p), int(m) & 0o777, int(s), int(t)) for p, m, s, t in index["libraries"]]
        except (ValueError, TypeError, KeyError) as exc:
            raise PackUnusable(f"{self.path} has an unreadable index: {exc}") from None
        if any(size < 0 for _, _, size, _ in self.files + self.libraries):
            raise PackUnusable(f"{self.path} lists a negative size")

    def take(self, count: int) -> bytes:
        """The next ``count`` bytes of the pack; a pack that ends early is torn."""
        parts: list[bytes] = []
        self.stream(count, lambda part: parts.append(bytes(part)))
        return b"".join(parts)

    def stream(self, count: int, sink: Callable[[memoryview], object]) -> None:
        """Hand the next ``count`` bytes to ``sink``, in parts that are views of the read buffers."""
        while count > 0:
            self.wait_for_bytes()
            part = self.current[:count]
            sink(part)
            self.current = self.current[len(part) :]
            count -= len(part)

    def wait_for_bytes(self) -> None:
        """Have the next bytes read (a file's first bytes, before its copy is created)."""
        if not self.current and not self._advance():
            raise PackUnusable(f"{self.path} ends early (torn)")

    def _advance(self) -> bool:
        """The next bytes of the file, read now or (a big pack with ``readers``) in segments read ahead; False at its end."""
        if self.owned is not None:
            self.owned[0].put(self.owned[1])
            self.owned = None
        if self.readers is None or self.size <= SEGMENT_BYTES:
            pool, buffer = self.chunks, self.chunks.get()
            count = os.preadv(self.fd, [buffer], self.offset)
            self.offset += count
        else:
            while len(self.ahead) < SEGMENTS_AHEAD and self.offset < self.size:
                buffer = self.segments.get()
                self.ahead.append(self.readers.submit(_read_segment, self.fd, buffer, self.offset))
                self.offset += len(buffer)
            if not self.ahead:
                return False
            pool, (buffer, count) = self.segments, self.ahead.popleft().result()
        self.owned = (pool, buffer)
        self.current = memoryview(buffer)[:count]
        self.read += count
        self.hasher.update(self.current)
        return count > 0

    def finish(self) -> None:
        """Check nothing follows the last file and the bytes are the ones the install recorded."""
        tail = self.ahead or os.pread(self.fd, 1, max(self.offset, self.size))
        if self.current or tail or self.read != self.size:
            raise PackUnusable(f"{self.path} is longer than its index says")
        if self.hasher.hexdigest() != self.digest:
            raise PackUnusable(f"{self.path} does not match its recorded sha256")

    def close(self) -> None:
        if any(not segment.done() for segment in self.ahead):
            return  # a read still hung on the volume keeps its descriptor: never a reused number
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _read_segment(fd: int, buffer: mmap.mmap, offset: int) -> tuple[mmap.mmap, int]:
    """Fill ``buffer`` from ``offset`` (less at the end of the file), in reads of PACK_CHUNK; it and the count."""
    view, filled = memoryview(buffer), 0
    while filled < len(buffer):
        count = os.preadv(fd, [view[filled : filled + PACK_CHUNK]], offset + filled)
        if not count:
            break
        filled += count
    return buffer, filled


def write_all(fd: int, data: memoryview) -> None:
    """Write all of ``data`` to ``fd`` (a write may take only part of it)."""
    while data:
        data = data[os.write(fd, data) :]


class PackFailed(Exception):
    """One entry's pack turned out unusable while the copy was made: the copy is made again without it."""

    def __init__(self, entry: str, why: str) -> None:
        super().__init__(f"{entry}: {why}")
        self.entry, self.why = entry, why


# An entry's own record in its store folder (volume_cli.deps.documents.ENTRY_MANIFEST): not part of the forest.
ENTRY_MANIFEST = ".volume-cli-entry.json"


class _Folder:
    """An entry without a usable pack: its folder in the store, listed on the volume, its files copied one by one.

    Listed as a pack's index is read, so both kinds merge as the forest merges them. A link
    that stays inside its folder is kept as a link (as in a pack); any other is followed, as the
    generation's own copy follows the forest's links: only to somewhere under python-deps/.
    """

    def __init__(self, entry: str, path: str, allowed: str) -> None:
        self.entry, self.path, self.allowed = entry, path, allowed
        self.folders: list[str] = []
        self.files: list[tuple[str, str]] = []  # (path in the copy, file on the volume)
        self.links: list[tuple[str, str]] = []
        self.libraries: list[tuple[str, int, int, int]] = []  # none: every file is listed in ``files``

    def scan(self, relative: str, source: str) -> list[tuple[_Folder, str, str]]:
        """List the folder ``source`` (``relative`` in the copy); its subfolders are the next tasks."""
        tasks: list[tuple[_Folder, str, str]] = []
        handle = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            with os.scandir(handle) as items:
                for item in items:
                    if not relative and item.name in (ENTRY_MANIFEST, MARKER):
                        continue
                    path, found = f"{relative}/{item.name}" if relative else item.name, os.path.join(source, item.name)
                    if item.is_symlink():
                        tasks += self._link(path, found)
                    elif item.is_dir(follow_symlinks=False):
                        self.folders.append(path)
                        tasks.append((self, path, found))
                    else:
                        self.files.append((path, found))
        finally:
            os.close(handle)
        return tasks

    def _link(self, path: str, link: str) -> list[tuple[_Folder, str, str]]:
        text = os.readlink(link)
        with contextlib.suppress(PackUnusable):
            self.links.append((path, _link_text(path, text)))
            return []
        real = os.path.realpath(link)
        if not real.startswith(self.allowed):
            raise CopySkipped(f"{link} leads out of the volume's python-deps folder")
        if os.path.isdir(real):
            self.folders.append(path)
            return [(self, path, real)]
        self.files.append((path, real))
        return []


class PackUnpack:
    """Make a generation's copy from its entries' packs: a few large reads per entry, all entries at once.

    The entries in ``folders`` (no usable pack) are listed in the store and their files copied one
    by one (``TreeCopy``) while the packs are unpacked. The copy shows what the generation's forest
    shows (deps/forest.py): entries merged, a folder beating a file of the same path, and between two
    files the entry first in name order. A pack found unusable raises ``PackFailed``.

    The big native libraries a pack lists but leaves in its store entry (format 2) are copied from the
    store in segments or, when the copy with them would be over ``budget``, linked to the store: the
    copy then holds every other file, and the loader maps those libraries from the volume.
    """

    def __init__(
        self,
        packs: dict[str, tuple[str, int, str]],
        target: str,
        budget: int,
        deadline: float,
        *,
        folders: dict[str, str] | None = None,
        store: str = "",
    ) -> None:
        # Read buffers shared by the packs: a pack unpacked reuses those of the packs done before it.
        chunks, segments = _Buffers(lambda: PACK_CHUNK), _Buffers(lambda: SEGMENT_BYTES)
        self.segments = segments
        self.packs = [_Pack(entry, *found, chunks=chunks, segments=segments) for entry, found in sorted(packs.items())]
        self.folders = [
            _Folder(entry, path, os.path.realpath(os.path.dirname(os.path.dirname(path))) + os.sep)
            for entry, path in sorted((folders or {}).items())
        ]
        self.target, self.budget, self.deadline = target, budget, deadline
        self.owner: dict[str, str] = {}
        self.files = 0
        self.bytes = 0
        self.counting = threading.Lock()
        self.stopped = threading.Event()
        self.root = -1
        self.store = store
        self.real_store = ""
        self.readers: ThreadPoolExecutor | None = None
        self.link_libraries = False  # set by run(): the copy with its libraries would be over budget
        self.linked = 0

    def run(self) -> tuple[int, int]:
        from concurrent.futures import ThreadPoolExecutor

        self.root = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        readers = self.readers = ThreadPoolExecutor(THREADS)
        try:
            self._each(_Pack.open)
            # Indexes first, each from one chunk read; a big pack's segments are read ahead once
            # unpacking starts. Read ahead at open, 32 MB per big pack held the indexes ~0.45 s, not ~0.17 s.
            for pack in self.packs:
                pack.readers = readers
            first = [(folder, "", folder.path) for folder in self.folders]
            _drain(lambda task: task[0].scan(task[1], task[2]), first, self.deadline, threading.Event(), lambda: None)
            folders = self._plan()
            packed = sum(size for pack in self.packs for _, _, size, _ in pack.files)
            if packed > self.budget:
                raise CopyTooBig(packed, self.budget)
            libraries = sum(size for pack in self.packs for path, _, size, _ in self._owned_libraries(pack))
            self.link_libraries = packed + libraries > self.budget
            if libraries:
                self.real_store = os.path.realpath(self.store)
            for path in folders:  # parents first: one mkdir each, on local disk
                os.mkdir(path, dir_fd=self.root)
            copied = self._unpack_and_copy(self.budget - packed - (0 if self.link_libraries else libraries))
            for source in self._sources():
                for path, text in source.links:
                    if self.owner.get(path) == source.entry:
                        os.symlink(text, path, dir_fd=self.root)
        finally:
            readers.shutdown(wait=False, cancel_futures=True)
            for pack in self.packs:
                if not pack.busy:  # a read still hung on the volume keeps its descriptor: never a reused number
                    pack.close()
            if not any(pack.busy for pack in self.packs):  # nor the folder's, which a late write goes through
                os.close(self.root)
        return self.files + copied[0], self.bytes + copied[1]

    def _unpack_and_copy(self, budget: int) -> tuple[int, int]:
        """Unpack the packs while a ``TreeCopy`` copies the other entries' files: both bounded by the time limit."""
        from concurrent.futures import ThreadPoolExecutor, wait

        tasks = self._copy_tasks()
        if not tasks:
            self._each(self._unpack)
            return 0, 0
        copier = TreeCopy(self.target, self.target, budget, self.deadline, first=tasks)
        background = ThreadPoolExecutor(1)
        copying = background.submit(copier.run)

        def stop_packs(done: Future[tuple[int, int]]) -> None:
            if done.exception() is not None:
                self.stopped.set()  # the packs stop at their next file: the copy failed

        copying.add_done_callback(stop_packs)
        try:
            self._each(self._unpack)
        except BaseException as exc:
            copier.stopped.set()
            wait([copying], timeout=STOP_WAIT_SECONDS)
            if not copying.done():  # its late writes could land in the next attempt's folder: no next attempt
                raise CopySkipped(f"copying took longer than the time limit ({TIMEOUT_ENV})") from exc
            if copying.exception() is not None:
                raise copying.exception() from None  # type: ignore[misc]
            raise
        finally:
            background.shutdown(wait=False)
        return copying.result()

    def _copy_tasks(self) -> list[Task]:
        """The files of entries without a pack that the copy shows, in batches of one folder's files."""
        batches: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for folder in self.folders:
            for path, source in folder.files:
                if self.owner.get(path) == folder.entry:
                    where = (os.path.dirname(source), os.path.join(self.target, os.path.dirname(path)))
                    batches.setdefault(where, []).append((os.path.basename(source), os.path.basename(path)))
        return [
            (source, target, tuple(names[first : first + FILES_PER_TASK]))
            for (source, target), names in batches.items()
            for first in range(0, len(names), FILES_PER_TASK)
        ]

    def _sources(self) -> list[_Pack | _Folder]:
        """Every entry, packed or not, in name order."""
        return sorted([*self.packs, *self.folders], key=lambda source: source.entry)

    def _plan(self) -> list[str]:
        """The folders to make (parents first) and, in ``owner``, whose copy of each file or link is kept."""
        folders = {path for source in self._sources() for path in source.folders}
        for source in self._sources():  # by entry, as the forest resolves a clash
            libraries = [item[0] for item in source.libraries]
            for path in [item[0] for item in source.files] + [path for path, _ in source.links] + libraries:
                if path not in folders:
                    self.owner.setdefault(path, source.entry)
        return sorted(folders, key=lambda path: (path.count("/"), path))

    def _each(self, action: Callable[[_Pack], None]) -> None:
        """``action`` on every pack, THREADS at a time, within the time limit; the first failure is raised."""
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        if not self.packs:
            return
        pool = ThreadPoolExecutor(min(THREADS, len(self.packs)))
        # Largest first: one pack is read front to back by one thread, so the biggest sets the pace.
        futures = [pool.submit(self._busy, action, pack) for pack in sorted(self.packs, key=self._weight)]
        try:
            done, pending = wait(
                futures, timeout=max(self.deadline - time.monotonic(), 0.0), return_when=FIRST_EXCEPTION
            )
            for future in done:
                future.result()
            if pending:
                raise CopySkipped(f"copying took longer than the time limit ({TIMEOUT_ENV})")
        finally:
            if any(not future.done() for future in futures):
                self.stopped.set()  # the others stop at their next file
            pool.shutdown(wait=False, cancel_futures=True)
            wait([future for future in futures if not future.cancelled()], timeout=STOP_WAIT_SECONDS)

    @staticmethod
    def _busy(action: Callable[[_Pack], None], pack: _Pack) -> None:
        pack.busy = True
        try:
            action(pack)
        except PackUnusable as exc:
            raise PackFailed(pack.entry, str(exc)) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # no room on this disk: a copy file by file would not fit either
            raise PackFailed(pack.entry, exc.strerror or str(exc)) from None
        finally:
            pack.busy = False

    def _unpack(self, pack: _Pack) -> None:
        for path, mode, size, mtime in pack.files:
            if self.stopped.is_set() or time.monotonic() > self.deadline:
                raise CopySkipped(f"copying took longer than the time limit ({TIMEOUT_ENV})")
            if size:
                pack.wait_for_bytes()
            if self.stopped.is_set():
                return  # abandoned while this read waited on the volume
            if self.owner.get(path) != pack.entry:
                pack.stream(size, lambda part: None)  # another entry's file or a folder is what the forest shows here
                continue
            writer = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.root
            )
            try:
                pack.stream(size, functools.partial(write_all, writer))
                # Timestamp-based bytecode is checked against the source's mtime: keep it.
                os.utime(writer, ns=(mtime, mtime))
            finally:
                os.close(writer)
            with self.counting:
                self.files += 1
                self.bytes += size
        pack.finish()
        for library in self._owned_libraries(pack):
            self._library(pack.entry, *library)

    def _weight(self, pack: _Pack) -> int:
        """Bytes a pack's thread reads (negated: largest first), its libraries' when they are copied."""
        copied = 0 if self.link_libraries else sum(item[2] for item in pack.libraries)
        return -(pack.size + copied)

    def _owned_libraries(self, pack: _Pack) -> list[tuple[str, int, int, int]]:
        return [item for item in pack.libraries if self.owner.get(item[0]) == pack.entry]

    def _library(self, entry: str, path: str, mode: int, size: int, mtime: int) -> None:
        """One big library a pack leaves in its store entry: linked there, or copied in segments read at once."""
        if self.stopped.is_set() or time.monotonic() > self.deadline:
            raise CopySkipped(f"copying took longer than the time limit ({TIMEOUT_ENV})")
        from concurrent.futures import wait

        source = os.path.join(self.store, entry, path)
        reader = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        reading: deque[Future[tuple[mmap.mmap, int]]] = deque()
        try:
            status = os.fstat(reader)
            real = _opened_path(reader, source)
            # Where the file opened really is: no folder of the entry may have become a link out of it.
            inside = real.startswith(os.path.join(self.real_store, entry) + os.sep)
            if not stat.S_ISREG(status.st_mode) or status.st_size != size or not inside:
                raise PackUnusable(f"{source} is not the {size}-byte library its pack lists")
            if self.link_libraries:
                os.symlink(real, path, dir_fd=self.root)
                with self.counting:
                    self.linked += 1
                return
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            writer = os.open(path, flags, mode, dir_fd=self.root)
            try:
                self._copy_segments(reader, writer, size, source, reading)
                os.utime(writer, ns=(mtime, mtime))
            finally:
                os.close(writer)
        finally:
            wait(reading, timeout=STOP_WAIT_SECONDS)  # reads left by a failure end before the descriptor closes
            if all(segment.done() for segment in reading):  # one hung on the volume keeps it: never a reused number
                os.close(reader)
        with self.counting:
            self.files += 1
            self.bytes += size

    def _copy_segments(
        self, reader: int, writer: int, size: int, source: str, ahead: deque[Future[tuple[mmap.mmap, int]]]
    ) -> None:
        """Copy ``size`` bytes, SEGMENTS_AHEAD segments read at once by the readers (the reads in flight: ``ahead``)."""
        assert self.readers is not None
        offset = written = 0
        while written < size:
            while len(ahead) < SEGMENTS_AHEAD and offset < size:
                buffer = self.segments.get()
                ahead.append(self.readers.submit(_read_segment, reader, buffer, offset))
                offset += len(buffer)
            buffer, count = ahead.popleft().result()
            try:
                wanted = min(len(buffer), size - written)
                if count < wanted:
                    raise PackUnusable(f"{source} ends before the {size} bytes its pack lists")
                write_all(writer, memoryview(buffer)[:wanted])
            finally:
                self.segments.put(buffer)
            written += wanted
            if self.stopped.is_set() or time.monotonic() > self.deadline:
                raise CopySkipped(f"copying took longer than the time limit ({TIMEOUT_ENV})")


def _opened_path(fd: int, path: str) -> str:
    """The real path of the file open on ``fd`` (no round trip: the kernel knows it), else of ``path``."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def prune(folder: str, *, keep: str) -> None:
    """Remove copies of other generations that no process holds, but the newest of them (a rollback's)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    copies = [item for item in names if not item.startswith(".") and not item.endswith((SKIP_SUFFIX, LOCK_SUFFIX))]
    others = sorted(
        (item for item in copies if item != keep), key=lambda item: _modified(os.path.join(folder, item)), reverse=True
    )
    for item in others[1:]:
        _prune_one(folder, item)
    for item in names:
        if item.startswith(TRASH_PREFIX):  # a pruner killed while removing
            shutil.rmtree(os.path.join(folder, item), ignore_errors=True)
        elif item.startswith(TEMP_PREFIX) and not item.startswith(f"{TEMP_PREFIX}{keep}-"):
            _remove_if_abandoned(folder, item)


def _remove_if_abandoned(folder: str, temp: str) -> None:
    """A temp folder of another generation whose builder is gone (killed): nobody holds its builder lock."""
    generation = temp[len(TEMP_PREFIX) :].rsplit("-", 1)[0]
    try:
        lock = os.open(os.path.join(folder, generation + LOCK_SUFFIX), os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        lock = None  # its lock file was pruned with its copy: no builder can be waiting on it
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _discard(os.path.join(folder, temp))
    except OSError:
        pass  # a builder is at work
    finally:
        if lock is not None:
            os.close(lock)


def _modified(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _prune_one(folder: str, name: str) -> None:
    try:
        fd = os.open(os.path.join(folder, name, MARKER), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # no marker: not a copy this code made, or one being renamed away right now
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return  # a running process imports from it
    trash = os.path.join(folder, f"{TRASH_PREFIX}{uuid.uuid4().hex[:12]}")
    try:
        os.rename(os.path.join(folder, name), trash)
    except OSError:
        return
    finally:
        os.close(fd)
    shutil.rmtree(trash, ignore_errors=True)
    for suffix in (SKIP_SUFFIX, LOCK_SUFFIX):
        try:
            os.unlink(os.path.join(folder, name + suffix))
        except OSError:
            pass
