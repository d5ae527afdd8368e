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
import functools
import os
import posixpath
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from volume_cli.deps.documents import ENTRY_MANIFEST
from volume_cli.local_copy import TEMP_PREFIX, parse_pack_name, write_pack
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


def _scan(source: Path, prefix: str) -> _Tree:
    tree = _Tree(folders=[(prefix, stat.S_IMODE(os.lstat(source).st_mode))], files=[], links=[], bytes=0)
    pending = [(source, prefix)]
    size = 0
    while pending:
        folder, relative = pending.pop()
        for child in os.scandir(folder):
            path = posixpath.join(relative, child.name)
            info = child.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                tree.links.append((path, os.readlink(child.path)))
            elif stat.S_ISDIR(info.st_mode):
                tree.folders.append((path, stat.S_IMODE(info.st_mode)))
                pending.append((Path(child.path), path))
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
                view = memoryview(chunk)
                while view:
                    view = view[os.write(handle, view) :]
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

    def __init__(self, destination: Path, count: int) -> None:
        allow_open_files(count + 64)
        self.handles = {"": os.open(destination, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)}

    def make(self, path: str, mode: int, umask: int) -> None:
        parent, name = self.handles[posixpath.dirname(path)], posixpath.basename(path)
        os.mkdir(name, mode, dir_fd=parent)  # no exist_ok: a planted link or folder there fails the run
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        self.handles[path] = handle
        if mode & ~umask != mode:
            os.chmod(f"/proc/self/fd/{handle}", mode)

    def close(self) -> None:
        for handle in self.handles.values():
            os.close(handle)


def copy_trees(
    sources: dict[str, Path], destination: Path, *, packs: Path | None = None, threads: int | None = None
) -> Copied:
    """Copy each ``sources[name]`` folder to ``destination/name`` (absent), concurrently.

    Folders are made level by level (a parent before its children), then
    every file and link at once, interleaved across folders. With ``packs``,
    each source is also written there as one pack (see ``write_packs``).
    """
    umask = process_umask()
    trees = [_scan(source, name) for name, source in sorted(sources.items())]
    # Packs are written while the files are: a few large writes beside many small calls, so they
    # cost the file copies little wall time where, written after them, they added theirs to the total.
    packing = None
    if packs is not None:
        packing = _Background(functools.partial(write_packs, sources, packs, threads=PACK_THREADS))
    try:
        _copy_scanned(trees, sources, destination, umask=umask, threads=threads)
    finally:
        if packing is not None:
            packing.join()
    return Copied(files=sum(len(tree.files) for tree in trees), bytes=sum(tree.bytes for tree in trees))


# Packs in flight at once beside the file copies: each is one large file, so a few keep the volume busy
# (measured on the simulated volume: see tests/test_full_install_fast.py's module note).
PACK_THREADS = 4


class _Background:
    """``action`` in a thread; ``join`` waits for it and raises what it raised."""

    def __init__(self, action: Callable[[], object]) -> None:
        self.failure: BaseException | None = None

        def run() -> None:
            try:
                action()
            except BaseException as exc:  # raised in the caller's thread by join
                self.failure = exc

        self.thread = threading.Thread(target=run, name="volume-cli-packs")
        self.thread.start()

    def join(self) -> None:
        self.thread.join()
        if self.failure is not None:
            raise self.failure


def _copy_scanned(
    trees: list[_Tree], sources: dict[str, Path], destination: Path, *, umask: int, threads: int | None
) -> None:
    """Make the scanned ``trees`` under ``destination``: folders level by level, then files and links."""
    levels: dict[int, list[tuple[str, tuple[str, int]]]] = {}
    for tree in trees:
        for path, mode in tree.folders:
            levels.setdefault(path.count("/"), []).append((posixpath.dirname(path), (path, mode)))
    folders = _Folders(destination, sum(len(level) for level in levels.values()))
    try:
        for depth in sorted(levels):
            run_spread(levels[depth], lambda item: folders.make(item[0], item[1], umask), threads=threads)

        def make(item: tuple[str, int | str]) -> None:
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
    finally:
        folders.close()


def write_packs(sources: dict[str, Path], packs: Path, *, threads: int | None = None) -> None:
    """One pack per entry in ``packs`` (the folder exists or is made; its parent is checked by the caller).

    A pack may land before its entry is renamed into the store: workers read packs
    only for the entries of a recorded generation, and gc removes one whose entry
    never arrived (``remove_packs``).
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(packs)
    handle = os.open(packs, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)  # never a planted link
    # An entry packed before (a rerun after a kill, a racing install) keeps its pack: packs are immutable too.
    packed = {parsed[0] for parsed in map(parse_pack_name, os.listdir(packs)) if parsed is not None}
    try:

        def pack(item: tuple[str, Path]) -> None:
            write_pack(str(item[1]), handle, item[0], skip=frozenset({ENTRY_MANIFEST}))

        wanted = sorted((name, source) for name, source in sources.items() if name not in packed)
        run_spread(((name, (name, source)) for name, source in wanted), pack, threads=threads)
    finally:
        os.close(handle)


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
