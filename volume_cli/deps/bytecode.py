"""Bytecode for staged distributions: compiled on local disk, hash-based, never checked again.

Store entries never change after they are published, so their ``.pyc``
files are compiled with ``unchecked-hash`` invalidation: the interpreter
loads them without comparing the source's mtime or hash. That saves a stat
per module on a worker's cold import, and the pycs stay valid through
copies that change mtimes (a pull from S3, a ``cp`` without ``-p``). They
are compiled in the local staging folder, by the target interpreter (the
magic number is its own), with several workers.

``compile_entries`` compiles entry folders one after another and says which
one is done as soon as it is, so the caller publishes it while the next
ones compile (``deps/entries.py``). Each pyc names the source by the path it
had in the staged install (``dfile``), so its bytes are those a compile of
the whole staged install before distributing (``compile_bytecode``) gives.
"""

from __future__ import annotations

import os
import py_compile
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from volume_cli.runner import run

# Up to this many sources the running interpreter compiles them itself when it is the target's X.Y
# (same magic number): starting a second Python and its pool cost more than compiling. Measured on the
# simulated volume's one-leaf change (tqdm, 34 sources): 0.13 s through a second Python, 0.03 s here.
IN_PROCESS_MAX_SOURCES = 300

# Quiet and forgiving like uv's --compile-bytecode: a test file in Python 2 syntax must not fail the install.
# Files go to the workers in a few chunks, where compileall hands them over one by one. Measured on the
# 44-wheel set (8.2k .py files, 2 busy cores): uv's install plus this 24.7 s and 24.4 s, uv's own
# --compile-bytecode 24.3 s twice; compileall -j 2 took a little longer than this.
_COMPILE = """
import multiprocessing, os, py_compile, sys

def compile_chunk(paths):
    for path in paths:
        try:
            py_compile.compile(path, doraise=True, quiet=2,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        except Exception:
            pass

paths = [os.path.join(folder, name) for folder, _, names in os.walk(sys.argv[1])
         for name in names if name.endswith(".py")]
workers = int(sys.argv[2])
chunks = [paths[start::workers * 8] for start in range(workers * 8)]
with multiprocessing.get_context("fork").Pool(workers) as pool:
    pool.map(compile_chunk, chunks, chunksize=1)
"""


def compile_bytecode(
    target: Path, *, interpreter: Path, python_version: str | None = None, log_dir: Path | None = None
) -> None:
    """Compile every ``.py`` under ``target`` to unchecked-hash pycs with ``interpreter``.

    A few sources of the running interpreter's own X.Y (``python_version``) are compiled here instead.
    """
    if python_version == f"{sys.version_info.major}.{sys.version_info.minor}" and sys.implementation.name == "cpython":
        sources = [
            os.path.join(folder, name) for folder, _, names in os.walk(target) for name in names if name.endswith(".py")
        ]
        if len(sources) <= IN_PROCESS_MAX_SOURCES:
            for source in sources:
                _compile_here(source)
            return
    workers = max(2, os.cpu_count() or 1)
    # -I: the user's PYTHON* variables and site-packages play no part in compiling.
    run([str(interpreter), "-I", "-c", _COMPILE, str(target), str(workers)], label="compile-bytecode", log_dir=log_dir)


def _compile_here(source: str, shown_as: str | None = None) -> None:
    try:
        # optimize=0: a volume-cli run with -O must still write the plain pyc every worker loads.
        py_compile.compile(
            source,
            dfile=shown_as,
            doraise=True,
            quiet=2,
            optimize=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    except Exception:  # like the workers: a test file in Python 2 syntax must not fail the install
        pass


# Set (tests and benchmarks only): compile the whole staged install, then publish every entry, as before the
# pipeline; the entries must come out the same either way (tests/test_compile_publish_overlap.py).
COMPILE_FIRST_ENV = "VOLUME_CLI_TEST_COMPILE_FIRST"


def compile_first() -> bool:
    return os.environ.get(COMPILE_FIRST_ENV) == "1"


# Files per task of the pool: small enough that an entry's chunks spread over the workers and that a
# line arrives often (the caller stops the compile on its line callback), large enough to cost little.
CHUNK_SOURCES = 64

# One line per finished task: "compiled <index>" when it was the entry's last, "." otherwise.
# A worker dies with its parent (PR_SET_PDEATHSIG), and SIGTERM ends the pool: a stopped or killed
# compile leaves no worker compiling on. Entries without sources are reported before any compiling.
# Workers run niced (COMPILE_NICE): they take every idle core, and the publisher's threads, which
# compute little but must answer at once to keep the volume busy, come first.
_COMPILE_ENTRIES = """
import ctypes, multiprocessing, os, py_compile, signal, sys

def die_with_parent(parent):
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except Exception:
        pass
    # The signal comes only for a death after the prctl: a parent killed while this interpreter started (or
    # while the pool forked) has already left us to another one, and we would compile on for nobody.
    if parent_gone(parent):
        os._exit(1)

def parent_gone(parent):
    # Dead, or dying: a dying process is marked exiting (PF_EXITING, 0x4 in its flags) before it closes its
    # files, and may hand us to another parent before it turns zombie; a check of its state alone saw it
    # running then and let us compile on. Through a wrapper (not our parent) volume-cli still runs.
    try:
        with open("/proc/%d/stat" % parent) as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
        return fields[0] in ("Z", "X") or int(fields[6]) & 0x4 != 0
    except (OSError, IndexError, ValueError):
        return os.getppid() != parent

def start_worker():
    # The pool's terminate() ends idle workers with SIGTERM: the parent's handler (inherited by fork) would
    # turn it into SystemExit, which a worker blocked on the task queue's lock never reaches (seen: a hung pool).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(SCRIPT)
    try:
        os.nice(NICE)
    except OSError:
        pass

def compile_chunk(task):
    index, folder, paths = task
    for path in paths:
        try:
            py_compile.compile(path, dfile=ORIGIN + path[len(folder):], doraise=True, quiet=2,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        except Exception:
            pass
    return index

signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
ORIGIN, workers, folders = sys.argv[1], int(sys.argv[2]), sys.argv[4:]
die_with_parent(int(sys.argv[3]))
SCRIPT = os.getpid()
tasks, left = [], []
for index, folder in enumerate(folders):
    paths = sorted(os.path.join(parent, name) for parent, _, names in os.walk(folder)
                   for name in names if name.endswith(".py"))
    left.append(0)
    for start in range(0, len(paths), CHUNK):
        tasks.append((index, folder, paths[start:start + CHUNK]))
        left[index] += 1
    if not paths:
        print("compiled", index, flush=True)
pool = multiprocessing.get_context("fork").Pool(workers, initializer=start_worker)
for index in pool.imap_unordered(compile_chunk, tasks, chunksize=1):
    left[index] -= 1
    print("compiled %d" % index if left[index] == 0 else ".", flush=True)
# close + join: the workers leave on their sentinels. Pool's __exit__ (terminate) can take the task
# queue's lock while a worker waits for it, and that worker then waits forever (seen on the full set).
pool.close()
pool.join()
"""


COMPILE_NICE = 10


def compile_workers() -> int:
    """The compile pool's size: every core (niced: the publisher's threads come first).

    Measured on the simulated volume (44-wheel set, 2 cores shared with its server and another
    engineer's runs): compiling and storing took 33.5 s with two workers at nice 10 (load ~5, both
    cores busy to the end), 49.7 s with one worker at the same load (a core idle while the publisher
    waited for the compile; 33.2-42.1 s at load 10-16), 38.0 s with two not niced; one after the
    other 44.3 s at load ~5 (39.8-54.6 s at load 6-16).
    """
    return max(2, os.cpu_count() or 1)


def compile_entries(
    folders: Sequence[Path],
    *,
    origin: Path,
    interpreter: Path,
    python_version: str | None = None,
    log_dir: Path | None = None,
    on_line: Callable[[int | None], None],
    before_pool: Callable[[], None] = lambda: None,
) -> None:
    """Compile every ``.py`` under each of ``folders``, in that order, as if it were under ``origin``.

    ``on_line(index)`` is called once per entry of ``folders`` when all its
    sources are compiled, and ``on_line(None)`` between entries' chunks; what
    it raises stops the compile. A file under ``folders[i]/a/b.py`` is compiled
    as ``origin/a/b.py`` (the name tracebacks show). A few sources of the
    running interpreter's own X.Y (``python_version``) are compiled here;
    otherwise ``before_pool()`` is called just before the pool starts.
    """
    sources = [_sources(folder) for folder in folders]  # one walk: the in-process choice and the bound
    count = sum(len(found) for found in sources)
    if python_version == f"{sys.version_info.major}.{sys.version_info.minor}" and sys.implementation.name == "cpython":
        if count <= IN_PROCESS_MAX_SOURCES:
            for index, (folder, found) in enumerate(zip(folders, sources, strict=True)):
                for source in found:
                    _compile_here(source, os.path.join(origin, os.path.relpath(source, folder)))
                on_line(index)
            return

    def read(line: str) -> None:
        head, _, tail = line.partition(" ")
        on_line(int(tail) if head == "compiled" and tail.isdigit() else None)

    before_pool()
    script = _COMPILE_ENTRIES.replace("CHUNK", str(CHUNK_SOURCES)).replace("NICE", str(COMPILE_NICE))
    parent = str(os.getpid())  # the compile dies with this process, or exits at once if it is already gone
    arguments = [str(origin), str(compile_workers()), parent, *map(str, folders)]
    command = [str(interpreter), "-I", "-c", script, *arguments]
    run(command, label="compile-bytecode", log_dir=log_dir, on_line=read, timeout=compile_bound(count))


# A bound for a compile that is stuck (a hung pool), never for a slow one: a busy core compiles a source
# in ~4 ms (8.2k sources of the 44-wheel set: ~34 CPU-seconds), this allows 60 times that, plus a floor.
COMPILE_FLOOR_SECONDS = 600.0
COMPILE_SECONDS_PER_SOURCE = 0.25


def compile_bound(sources: int) -> float:
    """Seconds a compile of ``sources`` files may take before it is stopped as stuck."""
    return COMPILE_FLOOR_SECONDS + COMPILE_SECONDS_PER_SOURCE * sources


def _sources(folder: Path) -> list[str]:
    return sorted(
        os.path.join(parent, name) for parent, _, names in os.walk(folder) for name in names if name.endswith(".py")
    )
