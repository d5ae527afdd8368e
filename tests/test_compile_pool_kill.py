"""The bytecode compile pool never outlives what started it, by its die-with-parent mechanism alone.

``volume_cli/deps/bytecode.py`` runs ``_COMPILE_ENTRIES`` in a second interpreter: a fork pool whose
workers die with the compile script, which dies with volume-cli (PR_SET_PDEATHSIG). Each test here kills
one process of that chain with SIGKILL (no crash point, no handler, no cooperative exit) while the
workers compile sources generated to take long enough, and waits (bounded) until no process of the
compile is left. The kills are placed by progress the test sees (worker processes, a worker's CPU
time), never by a sleep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import command_lines_naming
from tests.wheelfactory import pyenv_python
from volume_cli.deps import bytecode
from volume_cli.errors import SubprocessError

REPO = Path(__file__).resolve().parents[1]
GONE_WITHIN = 10.0  # seconds: a dead parent's children get SIGKILL at once; this only bounds a failure
SEEN_WITHIN = 60.0  # seconds for a started compile to show progress, on a loaded machine


# -- processes, read from /proc --------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            text = stream.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _running(pid: int) -> bool:
    """Alive and not a zombie: a zombie runs nothing, and who reaps it (the pid 1 here) is not ours to test."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat(int(name))
        if fields is not None and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            found.append(int(name))
    return found


def _cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def _naming(text: str) -> list[int]:
    """Running processes whose command line names ``text`` (the compile script and its forked workers do)."""
    return [pid for pid in command_lines_naming(text) if _running(pid)]


def _left_after(pids: list[int], text: str, bound: float = GONE_WITHIN) -> list[int]:
    """Of ``pids`` and of the processes naming ``text``, those still running after at most ``bound`` seconds."""
    deadline = time.monotonic() + bound
    while True:
        left = sorted({pid for pid in pids if _running(pid)} | set(_naming(text)))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def _wait_for(what: str, found: Callable[[], bool]) -> None:
    deadline = time.monotonic() + SEEN_WITHIN
    while not found():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.01)


# -- the compile -----------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A folder named once for this test: every process of its compile names it; none outlives the test."""
    unique = tmp_path / f"pool-kill-{os.getpid()}-{time.monotonic_ns()}"
    unique.mkdir()
    yield unique
    for pid in _naming(str(unique)):  # a failed test's leftovers: ours by their command line, one by one
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(params=["this", "3.10"])
def interpreter(request: pytest.FixtureRequest) -> Path:
    """The compile's interpreter: this one, or the oldest a worker image runs (pyenv's, when installed here)."""
    if request.param == "this":
        return Path(sys.executable)
    found = pyenv_python(request.param)
    if found is None:
        pytest.skip(f"no CPython {request.param} from pyenv here")
    return found


def _write_sources(folder: Path, count: int, functions: int = 1000) -> None:
    """``count`` sources of ``functions`` small functions each: ~50 ms of compiling apiece on one core."""
    body = "".join(
        f"def f{number}(a, b):\n    x = [a * {number}, b + {number}, {{'k': a}}]\n    return sum(x[:2]) if a else b\n"
        for number in range(functions)
    )
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        (folder / f"m{number:04d}.py").write_text(f"# {number}\n{body}")


def _compile_command(
    monkeypatch: pytest.MonkeyPatch, folders: list[Path], origin: Path, interpreter: Path = Path(sys.executable)
) -> list[str]:
    """The command ``compile_entries`` runs for ``folders``, built by it and not run."""
    seen: list[list[str]] = []
    with monkeypatch.context() as patch:
        patch.setattr(bytecode, "run", lambda command, **_: seen.append(list(command)))
        bytecode.compile_entries(folders, origin=origin, interpreter=interpreter, on_line=lambda _: None)
    (command,) = seen
    return command


def _start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def _write_long_compiles(folder: Path, count: int) -> None:
    """``count`` sources of ~1.5M constants: a few CPU-seconds each inside a single py_compile call, where
    nothing cooperative (a flag checked between files, a Python signal handler) could stop a worker."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "DATA = [" + ",".join(map(str, range(1_500_000))) + "]\n"
    for number in range(count):
        (folder / f"huge{number}.py").write_text(f"# {number}\n{text}")


def _workers_compiling(parent: int, busy: int) -> list[int]:
    """The pool's workers under ``parent`` once ``busy`` of them are well inside a compile."""
    _wait_for("the pool's workers", lambda: len(_children(parent)) == bytecode.compile_workers())
    workers = _children(parent)
    _wait_for(f"{busy} workers compiling", lambda: sum(_cpu_seconds(pid) > 0.3 for pid in workers) >= busy)
    return workers


# -- the tests -------------------------------------------------------------------------------------------


def test_killing_the_compile_script_stops_its_workers_inside_their_compiles(
    folder: Path, interpreter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the die-with-parent signal a worker would finish its file (a pyc appears) and only then
    # fail to send its result: the workers must be gone with no pyc written.
    _write_long_compiles(folder / "entry", bytecode.compile_workers())
    monkeypatch.setattr(bytecode, "CHUNK_SOURCES", 1)  # one long file per worker
    script = _start(_compile_command(monkeypatch, [folder / "entry"], folder / "origin", interpreter))
    try:
        workers = _workers_compiling(script.pid, busy=bytecode.compile_workers())
        os.kill(script.pid, signal.SIGKILL)  # only the pool's parent: the workers are not signalled by us
    finally:
        script.kill()
        script.communicate(timeout=60)
    assert _left_after(workers, str(folder)) == [], "a compile worker outlived its killed parent"
    assert not list(folder.rglob("*.pyc")), "a worker finished its compile after its parent was killed"


_VOLUME_CLI = """
import sys
from pathlib import Path
from volume_cli.deps import bytecode
bytecode.CHUNK_SOURCES = 1
folder = Path(sys.argv[1])
bytecode.compile_entries([folder / "entry"], origin=folder / "origin", interpreter=Path(sys.argv[2]),
                         on_line=lambda index: print("line", index, flush=True))
"""


def test_killing_volume_cli_stops_the_compile_script_and_its_workers(folder: Path, interpreter: Path) -> None:
    _write_long_compiles(folder / "entry", bytecode.compile_workers())
    volume_cli = subprocess.Popen(
        [sys.executable, "-c", _VOLUME_CLI, str(folder), str(interpreter)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        _wait_for("the compile script", lambda: len(_children(volume_cli.pid)) == 1)
        (script,) = _children(volume_cli.pid)
        workers = _workers_compiling(script, busy=bytecode.compile_workers())
        os.kill(volume_cli.pid, signal.SIGKILL)  # only volume-cli, as the OOM killer would
    finally:
        volume_cli.kill()
        volume_cli.communicate(timeout=60)
    assert _left_after([script, *workers], str(folder)) == [], "the compile outlived the killed volume-cli"
    assert not list(folder.rglob("*.pyc")), "a worker finished its compile after volume-cli was killed"


def test_an_idle_worker_and_one_inside_a_long_compile_die_with_their_parent(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One long file: one worker compiles it, the other waits on the task queue.
    _write_long_compiles(folder / "entry", 1)
    script = _start(_compile_command(monkeypatch, [folder / "entry"], folder / "origin"))
    try:
        workers = _workers_compiling(script.pid, busy=1)
        os.kill(script.pid, signal.SIGKILL)
    finally:
        script.kill()
        script.communicate(timeout=60)
    assert _left_after(workers, str(folder)) == [], "a worker outlived its parent"
    assert not list(folder.rglob("*.pyc")), "the long compile finished: the kill did not land inside it"


@pytest.mark.parametrize("shape", ["busy", "one-long-file"])
def test_a_stuck_compile_stopped_at_its_bound_leaves_no_worker(
    shape: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The runner's timeout: SIGTERM to the script (its handler exits, the pool's finalizer runs), SIGKILL after
    # a grace period. A real pool stands for a stuck one, the bound made tiny: every worker busy, or one inside
    # a long compile while the other waits on the task queue (where the pool's own terminate can hang).
    if shape == "busy":
        _write_sources(folder / "entry", 300)
        monkeypatch.setattr(bytecode, "CHUNK_SOURCES", 4)
    else:
        _write_long_compiles(folder / "entry", 1)
    monkeypatch.setattr(bytecode, "COMPILE_FLOOR_SECONDS", 1.0)
    monkeypatch.setattr(bytecode, "COMPILE_SECONDS_PER_SOURCE", 0.0)
    lines: list[int | None] = []
    with pytest.raises(SubprocessError, match="compile-bytecode timed out"):
        bytecode.compile_entries(
            [folder / "entry"], origin=folder / "origin", interpreter=Path(sys.executable), on_line=lines.append
        )
    assert _left_after([], str(folder)) == [], "a stopped compile left a process behind"
    assert 0 not in lines and len(list(folder.rglob("*.pyc"))) < 300  # stopped before the entry was done


_STARTS_THE_COMPILE_AND_DIES = """
import os, subprocess, sys
from pathlib import Path
from volume_cli.deps import bytecode

def start_and_die(command, **_):
    # Its output into a pipe, as the runner's: once this process is gone the compile's first line breaks it.
    subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os._exit(0)  # before the compile's interpreter has started: its prctl comes after its parent is gone

bytecode.run = start_and_die
bytecode.CHUNK_SOURCES = 4
folder = Path(sys.argv[1])
bytecode.compile_entries([folder / "entry"], origin=folder / "origin", interpreter=Path(sys.argv[2]),
                         on_line=print)
"""


def test_a_compile_whose_volume_cli_died_while_it_started_exits(folder: Path, interpreter: Path) -> None:
    # PR_SET_PDEATHSIG fires only for a parent that dies after the prctl: volume-cli killed while the compile's
    # interpreter starts (tens of ms of imports) left it compiling for nobody until its first line found the
    # pipe broken, a chunk later (a long file's compile later).
    _write_sources(folder / "entry", 300)
    starter = [sys.executable, "-c", _STARTS_THE_COMPILE_AND_DIES, str(folder), str(interpreter)]
    subprocess.run(starter, check=True, timeout=60, cwd=REPO)
    assert _left_after([], str(folder)) == [], "a compile started by a dead volume-cli compiles on"
    assert not list(folder.rglob("*.pyc")), "a compile started by a dead volume-cli compiled"


def test_an_interpreter_started_through_a_wrapper_still_compiles(folder: Path) -> None:
    # The exit above must not take a live volume-cli for a dead one: through a wrapper that does not exec,
    # the compile's parent is the wrapper, and volume-cli still runs.
    _write_sources(folder / "entry", 3, functions=2)
    wrapper = folder / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\n"{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    lines: list[int | None] = []
    bytecode.compile_entries([folder / "entry"], origin=folder / "origin", interpreter=wrapper, on_line=lines.append)
    assert lines == [0] and len(list(folder.rglob("*.pyc"))) == 3


_ORPHANED_BEFORE_ITS_PRCTL = """
import ast, ctypes, os, signal, sys
from pathlib import Path
from volume_cli.deps import bytecode

# The compile script's own die_with_parent, as a worker of the pool runs it (the script's text, not a copy).
wanted = ("die_with_parent", "parent_gone")
tree = ast.parse(bytecode._COMPILE_ENTRIES)
definitions = ast.Module([node for node in tree.body if getattr(node, "name", None) in wanted], [])
namespace = {"ctypes": ctypes, "os": os, "signal": signal}
exec(compile(definitions, "<compile script>", "exec"), namespace)
parent = os.getpid()
read, write = os.pipe()
if os.fork() == 0:  # the worker
    os.close(write)
    os.read(read, 1)  # end of file: the parent has exited, before our prctl (a script killed while forking)
    namespace["die_with_parent"](parent)
    Path(sys.argv[1]).touch()  # still here: it would compile for nobody, then wait on a dead queue
    os._exit(0)
os._exit(0)
"""


def test_a_worker_whose_script_died_before_its_prctl_exits(folder: Path) -> None:
    survived = folder / "survived"
    subprocess.run([sys.executable, "-c", _ORPHANED_BEFORE_ITS_PRCTL, str(survived)], check=True, timeout=60, cwd=REPO)
    assert _left_after([], str(folder)) == [], "the orphaned worker runs on"
    assert not survived.exists(), "a worker forked by a script that died before its prctl carried on"
