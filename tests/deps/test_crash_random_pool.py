"""SIGKILL of installs whose bytecode is compiled by the pool: every outcome is consistent, no compiler is left.

``test_crash_random.py`` kills installs whose few sources compile inside volume-cli; here every killed
install compiles a fresh version of a package with more sources than ``IN_PROCESS_MAX_SOURCES``, so the
compile runs in the target interpreter's fork pool (``deps/bytecode.py``). Only volume-cli is killed, as
the OOM killer would: the compile script and its workers must then be gone within a bound (the rest of
the process group, uv, which does not die with volume-cli, is killed after that check; that the
die-with-parent signal alone stops the pool is proven in ``tests/test_compile_pool_kill.py``). Then:
the stable path imports the old or the new set whole, records agree with the disk, and the rerun
converges (the checks of ``test_crash_random.Chain``).

By default a deterministic sample: a kill while the pool compiles (placed by seeing the pool's
processes) and the crash point inside the compile, on a volume on the scratch folder's disk (entries
renamed) and on another one (entries copied while the next ones compile), and a SIGTERM to the CLI
while the pool compiles. ``VOLUME_CLI_SLOW_TESTS=1`` adds every named crash point and 50 kills at
random delays (seeded, as in ``test_crash_random.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.helpers import Projects
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.deps import bytecode, scratch
from volume_cli.deps.faults import POINTS
from volume_cli.layout import VolumeLayout
from volume_cli.project.definition import ProjectDefinition

from . import racekit
from .helpers import PY, import_values
from .test_crash_random import KILLS_SLOW, SEED, SLOW, Chain

MODULES = bytecode.IN_PROCESS_MAX_SOURCES + 60  # the pool compiles them: more than volume-cli compiles itself
COMPILE_POINT = "first-entry-compiled"  # not in faults.POINTS: only installs that compile reach it
GONE_WITHIN = 10.0  # seconds for the compile to follow a killed volume-cli (it is at once; this bounds a failure)
VERSIONS_DEFAULT = 3
VERSIONS_SLOW = 2 + len(POINTS) + 1 + KILLS_SLOW


def _bulk(version: int) -> dict[str, str]:
    body = "".join(f"def f{number}(a):\n    return [a, {number}, {{'k': a}}]\n" for number in range(30))
    files = {f"bulk/m{number}.py": body for number in range(MODULES)}
    return files | {"bulk/__init__.py": f"VERSION = {version}\n"}


@pytest.fixture
def pool_index(tmp_path: Path) -> Iterator[IndexServer]:
    """``bulk`` 1..N (one fresh version per killed install: a stored one is never compiled again), ``keep``."""
    folder = tmp_path / "wheels-pool"
    for version in range(1, (VERSIONS_SLOW if SLOW else VERSIONS_DEFAULT) + 1):
        build_wheel(folder, "bulk", f"{version}.0", files=_bulk(version), top_level=["bulk"])
    build_wheel(folder, "keep", "1.0")  # an entry every generation keeps
    with IndexServer(folder) as server:
        yield server


@pytest.fixture(params=["same-disk", "other-disk"])
def pool_layout(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[VolumeLayout]:
    """The volume on the scratch folder's disk (entries renamed), or on another one (tmpfs: entries copied)."""
    monkeypatch.setenv(scratch.SCRATCH_ENV, str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    if request.param == "same-disk":
        yield VolumeLayout(tmp_path / "volume")
        return
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no tmpfs on another disk than the test's folder")
    other = Path(tempfile.mkdtemp(prefix="volume-cli-pool-kill-", dir="/dev/shm"))
    try:
        yield VolumeLayout(other / "volume")
    finally:
        shutil.rmtree(other, ignore_errors=True)


def _compilers(scratch_folder: Path) -> list[int]:
    """Running processes of a compile of this test: the compile script and its forked workers."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as stream:
                arguments = stream.read()
            with open(f"/proc/{name}/stat") as stream:
                state = stream.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"compile_chunk" in arguments and str(scratch_folder).encode() in arguments and state not in "ZX":
            found.append(int(name))
    return found


def _compilers_after(scratch_folder: Path, bound: float = GONE_WITHIN) -> list[int]:
    """The compile processes still running after at most ``bound`` seconds (a killed parent's go at once)."""
    deadline = time.monotonic() + bound
    while _compilers(scratch_folder) and time.monotonic() < deadline:
        time.sleep(0.02)
    return _compilers(scratch_folder)


class PoolChain(Chain):
    """One volume through installs of ``bulk`` 1, 2, 3...: each killed one compiles a version never stored."""

    def __init__(self, layout: VolumeLayout, projects: Projects, index: IndexServer, cache: Path) -> None:
        super().__init__(layout, projects, index, cache, "install", 0)
        self.scratch = Path(os.environ[scratch.SCRATCH_ENV])
        self.version = 0  # of bulk in the current generation once the last rerun is done

    def project(self, which: int) -> ProjectDefinition:
        return self.projects.make("demo", {"m": {"packages": [f"bulk=={which}.0", "keep==1.0"]}})

    def imports(self) -> tuple[dict[str, str], Sequence[Mapping[str, object]]]:
        """``bulk`` is the old version or the new one, ``keep`` never changes."""
        whole = [{"v": version, "k": "1.0"} for version in (self.version, self.version + 1)]
        return {"v": "bulk.VERSION", "k": "keep.VERSION"}, whole

    def installing(self) -> ProjectDefinition:
        return self.project(self.version + 1)  # the set being installed, as Chain passes it

    def start_next(self, crash_at: str | None = None) -> tuple[subprocess.Popen[str], tuple[str | None, str | None]]:
        """An install of the next version of ``bulk`` in a subprocess, and the generations before it."""
        before = self.view()
        folder = self.project(self.version + 1).folder
        process = racekit.start(
            "install", self.layout, folder, mirror=self.index.url, cache=self.cache, crash_at=crash_at
        )
        return process, before

    def kill_volume_cli(self, process: subprocess.Popen[str], how: str) -> None:
        """SIGKILL volume-cli alone; its compile must follow it; then the rest of its group (uv) goes too."""
        if process.returncode is None:
            process.kill()  # the process itself, not its group
        left = _compilers_after(self.scratch)
        self.expect(not left, f"{how}: compile processes {left} outlived the killed volume-cli")
        for pid in left:  # ours, named by this test's scratch folder: gone before the next trial
            os.kill(pid, signal.SIGKILL)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if process.returncode is None:
            process.communicate(timeout=60)
        self.tried += 1

    def trial(self, how: str, before: tuple[str | None, str | None]) -> None:
        """After a killed install (``how``): consistent, one switch at most, the rerun converges."""
        after = self.consistent()
        self.expect(after == before or after[1] == before[0], f"{how}: {before} -> {after}: not one switch")
        self.outcomes[f"{how}: {'old generation kept' if after == before else 'switched'}"] += 1
        self.version += 1
        self.install(self.version)  # the rerun
        rerun = self.view()
        expected_previous = before[1] if rerun[0] == before[0] else before[0]
        self.expect(rerun[1] == expected_previous, f"{how}: {before} -> {rerun}: previous is not one back")
        values = import_values(self.layout.deps_path("demo", PY), {"v": "bulk.VERSION"})
        self.expect(values == {"v": self.version}, f"{how}: the rerun imports {values}, not {self.version}")
        self.version -= 1  # consistent() allows this version or the next
        self.consistent()
        self.version += 1
        self.converged()

    def at_point(self, point: str) -> None:
        process, before = self.start_next(crash_at=point)
        code, out = racekit.finish(process)
        self.expect(code == -signal.SIGKILL, f"{point}: not reached (exit {code}): {out[-2000:]}")
        self.kill_volume_cli(process, point)  # it killed itself: the compile must be gone all the same
        self.trial(point, before)

    def while_compiling(self) -> None:
        process, before = self.start_next()
        deadline = time.monotonic() + 120
        while not _compilers(self.scratch) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        self.expect(process.poll() is None, "the install ended before its compile was seen")
        self.kill_volume_cli(process, "while compiling")
        self.trial("while compiling", before)

    def at_random(self, window: float) -> None:
        process, before = self.start_next()
        delay = self.rng.uniform(self.startup * 0.8, window * 1.1)
        try:
            process.wait(timeout=delay)
            how = "finished before the kill"
        except subprocess.TimeoutExpired:
            how = "killed while compiling" if _compilers(self.scratch) else "killed"
        self.kill_volume_cli(process, f"{how} (after {delay:.2f}s)")
        self.trial(how, before)


def _chain(layout: VolumeLayout, projects: Projects, index: IndexServer, cache: Path) -> PoolChain:
    layout.root.mkdir(parents=True, exist_ok=True)
    chain = PoolChain(layout, projects, index, cache)
    chain.version = 1
    chain.install(1)
    return chain


def _report(chain: PoolChain) -> None:
    landed = ", ".join(f"{name}: {count}" for name, count in sorted(chain.outcomes.items()))
    print(f"pool installs: {chain.tried} kills (seed {SEED}), {len(chain.problems)} inconsistent ({landed})")
    assert not chain.problems, "\n".join(chain.problems)


def test_killed_pool_compiles_leave_a_consistent_volume_and_no_compiler(
    pool_layout: VolumeLayout, projects: Projects, pool_index: IndexServer, isolated_uv: Path
) -> None:
    chain = _chain(pool_layout, projects, pool_index, isolated_uv)
    chain.while_compiling()
    chain.at_point(COMPILE_POINT)
    _report(chain)
    assert chain.tried == 2 and chain.outcomes


def test_sigterm_while_the_pool_compiles_stops_it_exits_143_and_the_rerun_converges(
    tmp_path: Path, projects: Projects, pool_index: IndexServer, isolated_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pod's graceful stop: the CLI unwinds (its SIGTERM handler), the runner stops the compile with
    # SIGTERM, then SIGKILL after a grace period; nothing of the compile may be left, the rerun converges.
    monkeypatch.setenv(scratch.SCRATCH_ENV, str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    chain = _chain(VolumeLayout(tmp_path / "volume"), projects, pool_index, isolated_uv)
    before = chain.view()
    chain.project(chain.version + 1)
    command = [sys.executable, "-m", "volume_cli", "deps", "install", "--project", "demo"]
    command += ["--root", str(chain.layout.root), "--projects-dir", str(projects.base), "--index-url", pool_index.url]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _compilers(chain.scratch) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert process.poll() is None, "the install ended before its compile was seen"
        process.terminate()
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("interrupted (SIGTERM)"), err
    assert _compilers_after(chain.scratch) == [], "the compile outlived the stopped install"
    chain.trial("SIGTERM while compiling", before)
    _report(chain)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not SLOW, reason="set VOLUME_CLI_SLOW_TESTS=1 for every crash point and 50 random kills")
def test_many_killed_pool_compiles_leave_a_consistent_volume_and_no_compiler(
    pool_layout: VolumeLayout, projects: Projects, pool_index: IndexServer, isolated_uv: Path
) -> None:
    chain = _chain(pool_layout, projects, pool_index, isolated_uv)
    for point in (*POINTS, COMPILE_POINT):
        chain.at_point(point)
    window = chain.timed("install", str(chain.project(chain.version + 1).folder))  # unkilled, as the kills run
    chain.version += 1
    for _ in range(KILLS_SLOW):
        chain.at_random(window)
    _report(chain)
