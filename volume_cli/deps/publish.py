"""Copy finished entries from the pod's local disk onto the volume: few calls per file, many in flight.

Each file costs what it must: one exclusive create, its writes, one close;
each folder one mkdir. Nothing is renamed file by file: an entry is copied
whole into the run's staging folder on the volume and then appears in the
store with ONE directory rename (``deps/entries.py``), so a reader never
sees half an entry and a killed run leaves only a staging folder, which the
next run removes.

Files are created with ``O_EXCL | O_NOFOLLOW``: a link planted in the
staging folder makes the create fail instead of writing through it.
Symlinks inside an entry are copied as links, never followed.

Each entry also gets a pack (``<python-deps>/.packs/``, format in
``volume_cli/local_copy.py``): one file holding the whole entry, written
here from local disk with large writes, so a worker's first start reads a
few large files instead of every file of its generation.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from volume_cli.deps.documents import ENTRY_MANIFEST
from volume_cli.local_copy import TEMP_PREFIX, parse_pack_name, write_all, write_pack
from volume_cli.parallel import allow_open_files, run_spread

CHUNK_BYTES = 1 << 20
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def process_umask() -> int:
    """This process's umask, read without changing it (``os.umask`` would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@dataclass(frozen=True)
class _Tree:
    """What to make under a destination: folders (parents first), files and links, with their modes."""

    folders: list[tuple[str, int]]  # (relative path, mode)
    files: list[tuple[str, int]]
    links: list[tuple[str, str]]  # (relative path, link text)
    bytes: int


BYTECODE_FOLDER = "__pycache__"


def _scan(source: Path, prefix: str, *, done: frozenset[str] = frozenset(), bytecode: bool = True) -> _Tree:
    """What is under ``source`` (as ``prefix/...``) but the paths in ``done``; without ``bytecode``,
    no ``__pycache__`` folder and no manifest: both may be being written (a temp file must never be
    copied), and come with the rest once the entry is added."""
    tree = _Tree(folders=[], files=[], links=[], bytes=0)
    if prefix not in done:
        tree.folders.append((prefix, stat.S_IMODE(os.lstat(source).st_mode)))
    pending = [(source, prefix)]
    size = 0
    while pending:
        folder, relative = pending.pop()
        for child in os.scandir(folder):
            path = posixpath.join(relative, child.name)
            if not bytecode and relative == prefix and child.name.lstrip(".").startswith(ENTRY_MANIFEST.lstrip(".")):
                continue
            info = child.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode):
                if bytecode or child.name != BYTECODE_FOLDER:
                    if path not in done:
                        tree.folders.append((path, stat.S_IMODE(info.st_mode)))
                    pending.append((Path(child.path), path))
            elif path in done:
                continue
            elif stat.S_ISLNK(info.st_mode):
                tree.links.append((path, os.readlink(child.path)))
            elif stat.S_ISREG(info.st_mode):
                tree.files.append((path, stat.S_IMODE(info.st_mode)))
                size += info.st_size
    return _Tree(tree.folders, tree.files, tree.links, size)


def copy_file(source: Path, destination: Path | str, mode: int, *, umask: int, dir_fd: int | None = None) -> None:
    """Create ``destination`` (it must not exist, nor be a link) with ``source``'s bytes and ``mode``."""
    handle = os.open(destination, _CREATE_FLAGS, mode, dir_fd=dir_fd)
    try:
        if mode & ~umask != mode:  # the umask took bits the file had (a group-writable file): one more call
            os.fchmod(handle, mode)
        with open(source, "rb", buffering=0) as stream:
            while True:
                chunk = stream.read(CHUNK_BYTES)
                if not chunk:
                    break
                write_all(handle, memoryview(chunk))
    finally:
        os.close(handle)


@dataclass(frozen=True)
class Copied:
    files: int
    bytes: int


class _Folders:
    """An open handle per folder made: a create through it looks up one name, not every folder of the path.

    With the kernel's cache off (or expired) each path component is one more
    round trip; ``.staging/<run>/<entry>/pkg/sub/x.py`` would cost six.
    """

    def __init__(self, destination: Path) -> None:
        self.handles = {"": os.open(destination, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)}

    def make(self, path: str, mode: int, umask: int) -> None:
        parent, name = self.handles[posixpath.dirname(path)], posixpath.basename(path)
        os.mkdir(name, mode, dir_fd=parent)  # no exist_ok: a planted link or folder there fails the run
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        self.handles[path] = handle
        if mode & ~umask != mode:
            os.chmod(f"/proc/self/fd/{handle}", mode)

    def forget(self, entries: Iterable[str]) -> None:
        """Close the handles of ``entries``' folders: they are made, no more creates go through them."""
        roots = set(entries)
        for path in [path for path in self.handles if path and path.partition("/")[0] in roots]:
            os.close(self.handles.pop(path))

    def close(self) -> None:
        for handle in self.handles.values():
            os.close(handle)
        self.handles.clear()


def copy_trees(
    sources: dict[str, Path], destination: Path, *, packs: Path | None = None, threads: int | None = None
) -> Copied:
    """Copy each ``sources[name]`` folder to ``destination/name`` (absent), concurrently.

    Folders are made level by level (a parent before its children), then
    every file and link at once, interleaved across folders. With ``packs``,
    each source is also written there as one pack (see ``write_packs``).
    """
    with Publisher(destination, packs=packs, threads=threads) as publisher:
        publisher.add(sources)
        return publisher.finish()


# Packs in flight at once beside the file copies: each is one large file, so a few keep the volume busy
# (measured on the simulated volume: see tests/test_full_install_fast.py's module note).
PACK_THREADS = 4


class _Cancelled(Exception):
    """The publisher was stopped: the rest of its work is skipped."""


class _Stage:
    """A thread doing ``action`` on batches of the entries added so far, until closed or cancelled."""

    def __init__(self, name: str, action: Callable[[dict[str, Path]], object], publisher: Publisher) -> None:
        self.action = action
        self.publisher = publisher
        self.pending: dict[str, Path] = {}
        self.closed = False
        self.thread = threading.Thread(target=self._work, name=name)
        self.thread.start()

    def _work(self) -> None:
        condition = self.publisher.condition
        while True:
            with condition:
                # Another stage's failure does not stop this one: the caller hears of it (add, finish)
                # and cancels; copy_trees ends its copies before raising a failed pack.
                while not self.pending and not self.closed and not self.publisher.cancelled:
                    condition.wait()
                if self.publisher.cancelled or not self.pending:
                    return
                batch, self.pending = self.pending, {}
            try:
                self.action(batch)
            except BaseException as exc:  # raised in the caller's thread by add or finish
                self.publisher.fail(exc)
                return


class Publisher:
    """Copies entries onto the volume as they are added, while the caller prepares the next ones.

    Entries are copied in batches (all those added while the previous batch
    was copied), each like ``copy_trees``; their packs are written by a second
    thread beside the copies. An entry ``start``ed before it is added is
    copied in two parts: everything but its bytecode at once (while it is
    being compiled), the rest once it is added: the volume is kept busy from
    the start, and the last entry compiled leaves only its pycs to copy. ``add`` and ``finish`` raise the first failure;
    a failure stops its own thread; ``cancel`` stops both, the batches in
    flight included.
    """

    def __init__(self, destination: Path, *, packs: Path | None = None, threads: int | None = None) -> None:
        self.umask = process_umask()
        self.threads = threads
        self.condition = threading.Condition()
        self.failure: BaseException | None = None
        self.cancelled = False
        self.copied = Copied(files=0, bytes=0)
        self.complete: set[str] = set()  # added: whole, bytecode and all
        self.done: dict[str, set[str]] = {}  # entry -> the paths already made on the volume
        self.folders = _Folders(destination)
        self.packs = _Packs(packs) if packs is not None else None
        self.stages = [_Stage("volume-cli-publish", self._copy, self)]
        if self.packs is not None:
            self.stages.append(_Stage("volume-cli-packs", self._pack, self))

    def start(self, sources: dict[str, Path]) -> None:
        """Copy all but the bytecode of ``sources`` (being compiled) now; ``add`` them when whole."""
        with self.condition:
            self.raise_failure()
            self.stages[0].pending.update(sources)
            self.condition.notify_all()

    def add(self, sources: dict[str, Path]) -> None:
        """Publish ``sources[name]`` as ``destination/name`` (absent) soon; raises an earlier failure."""
        with self.condition:
            self.raise_failure()
            self.complete.update(sources)
            for stage in self.stages:
                stage.pending.update(sources)
            self.condition.notify_all()

    def finish(self) -> Copied:
        """Wait until every added entry is published; what was copied."""
        with self.condition:
            for stage in self.stages:
                stage.closed = True
            self.condition.notify_all()
        self._join()
        self.raise_failure()
        return self.copied

    def cancel(self) -> None:
        """Stop publishing, the calls in flight included; returns once no thread of the publisher runs."""
        self.cancelled = True
        self.fail(_Cancelled())
        self._join()

    def fail(self, failure: BaseException) -> None:
        with self.condition:
            if self.failure is None:
                self.failure = failure
            self.condition.notify_all()

    def raise_failure(self) -> None:
        """Raise the failure that stopped publishing, if any (not a cancel)."""
        if self.failure is not None and not isinstance(self.failure, _Cancelled):
            raise self.failure

    def _join(self) -> None:
        for stage in self.stages:
            stage.thread.join()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> None:
        self.cancel()
        self.folders.close()
        if self.packs is not None:
            self.packs.close()

    def _check(self) -> None:
        # Only a cancel stops a batch midway: a failed pack lets its batch's file copies end, and
        # the caller then stops (add raises) and cancels the rest.
        if self.cancelled:
            raise _Cancelled()

    def _copy(self, batch: dict[str, Path]) -> None:
        with self.condition:  # an entry added after this point is copied whole by the next batch
            whole = {name for name in batch if name in self.complete}
        trees = []
        for name, source in sorted(batch.items()):
            done = self.done.setdefault(name, set())
            trees.append(_scan(source, name, done=frozenset(done), bytecode=name in whole))
            done.update(path for path, _ in trees[-1].folders + trees[-1].files + trees[-1].links)
        _copy_scanned(trees, batch, self.folders, umask=self.umask, threads=self.threads, check=self._check)
        self.folders.forget(whole)
        for name in whole:
            del self.done[name]
        files = sum(len(tree.files) for tree in trees)
        self.copied = Copied(self.copied.files + files, self.copied.bytes + sum(tree.bytes for tree in trees))

    def _pack(self, batch: dict[str, Path]) -> None:
        assert self.packs is not None
        self.packs.write(batch, threads=PACK_THREADS, check=self._check)


def _copy_scanned(
    trees: list[_Tree],
    sources: dict[str, Path],
    folders: _Folders,
    *,
    umask: int,
    threads: int | None,
    check: Callable[[], None],
) -> None:
    """Make the scanned ``trees`` under ``folders``' root: folders level by level, then files and links."""
    levels: dict[int, list[tuple[str, tuple[str, int]]]] = {}
    for tree in trees:
        for path, mode in tree.folders:
            levels.setdefault(path.count("/"), []).append((posixpath.dirname(path), (path, mode)))
    allow_open_files(len(folders.handles) + sum(len(level) for level in levels.values()) + 64)

    def make_folder(item: tuple[str, int]) -> None:
        check()
        folders.make(item[0], item[1], umask)

    for depth in sorted(levels):
        run_spread(levels[depth], make_folder, threads=threads)

    def make(item: tuple[str, int | str]) -> None:
        check()
        path, how = item
        parent, name = folders.handles[posixpath.dirname(path)], posixpath.basename(path)
        if isinstance(how, str):
            os.symlink(how, name, dir_fd=parent)
        else:
            head, _, rest = path.partition("/")
            copy_file(sources[head] / rest, name, how, umask=umask, dir_fd=parent)

    made: list[tuple[str, tuple[str, int | str]]] = []
    for tree in trees:
        made += [(posixpath.dirname(path), (path, mode)) for path, mode in tree.files]
        made += [(posixpath.dirname(path), (path, text)) for path, text in tree.links]
    run_spread(made, make, threads=threads)


def write_packs(sources: dict[str, Path], packs: Path, *, threads: int | None = None, readers: int = 1) -> None:
    """One pack per entry in ``packs`` (the folder exists or is made; its parent is checked by the caller).

    ``readers``: each entry's files read ahead by that many threads (sources on a network volume).

    A pack may land before its entry is renamed into the store: workers read packs
    only for the entries of a recorded generation, and gc removes one whose entry
    never arrived (``remove_packs``).
    """
    folder = _Packs(packs)
    try:
        folder.write(sources, threads=threads, readers=readers)
    finally:
        folder.close()


class _Packs:
    """The packs folder, opened once (made if absent, never through a planted link), and the entries packed there."""

    def __init__(self, packs: Path) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(packs)
        self.handle = os.open(packs, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        # An entry packed before (a rerun after a kill, a racing install) keeps its pack: packs are immutable too.
        self.packed = {parsed[0] for parsed in map(parse_pack_name, os.listdir(packs)) if parsed is not None}

    def write(
        self,
        sources: dict[str, Path],
        *,
        threads: int | None,
        readers: int = 1,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        def pack(item: tuple[str, Path]) -> None:
            check()
            write_pack(str(item[1]), self.handle, item[0], skip=frozenset({ENTRY_MANIFEST}), readers=readers)

        wanted = sorted((name, source) for name, source in sources.items() if name not in self.packed)
        run_spread(((name, (name, source)) for name, source in wanted), pack, threads=threads)

    def close(self) -> None:
        os.close(self.handle)


STALE_PACK_SECONDS = 6 * 3600.0  # as deps/entries.STALE_STAGING_SECONDS: no install writes a pack for longer


def remove_packs(packs: Path, store: Path, *, removed: Iterable[str]) -> int:
    """Remove the packs of ``removed`` entries, and old ones whose entry is not in ``store`` (or temp files); how many."""
    gone = set(removed)
    try:
        names = os.listdir(packs)
        stored = set(os.listdir(store))
    except OSError:
        return 0
    count = 0
    now = time.time()
    for name in names:
        parsed = parse_pack_name(name)
        entry = parsed[0] if parsed else None
        if entry is not None and entry in stored and entry not in gone:
            continue
        if entry not in gone:
            try:
                if now - os.lstat(packs / name).st_mtime < STALE_PACK_SECONDS:
                    continue  # an install may be writing it, or about to rename its entry into the store
            except OSError:
                continue
            if entry is None and not name.startswith(TEMP_PREFIX):
                continue  # not ours
        with contextlib.suppress(OSError):
            os.unlink(packs / name)
            count += 1
    return count
