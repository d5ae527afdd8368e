"""The simulated network volume (tests/netvol) and operation budgets of today's code on it.

Budgets are operation counts, never timings: each file-system call costs a round trip on
a network volume, so fewer calls is what makes volume-cli fast there. The kernel cache is
off in the budget tests, so every count depends only on the calls the code makes and is
the same on every run. The budgets are today's numbers with ~10% slack; the
network-volume work of issue 8 lowers them (lower a budget when the code gets better).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deps.helpers import PY
from tests.helpers import Projects
from tests.netvol.fixture import netvol, netvol_options  # noqa: F401 (fixtures)
from tests.netvol.mount import Counts, NetVol, mounted, unavailable_reason
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.consumer_env import consumer_env, write_runtime_copy
from volume_cli.deps import install
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

FILES = 5


@pytest.fixture
def netvol_options() -> dict[str, Any]:  # noqa: F811 (this module's settings)
    # No kernel cache: counts depend only on the calls made. No latency: counts do not need it.
    return {"latency_ms": 0.0, "cache_seconds": 0.0}


def _write_files(folder: Path, count: int, prefix: str = "file") -> None:
    for number in range(count):
        with open(folder / f"{prefix}{number}.txt", "w") as stream:
            stream.write("payload\n")


def test_a_file_written_through_the_mount_lands_in_the_backing_folder(netvol: NetVol) -> None:  # noqa: F811
    (netvol.path / "sub").mkdir()
    (netvol.path / "sub" / "hello.txt").write_text("hello")
    assert (netvol.backing / "sub" / "hello.txt").read_text() == "hello"
    os.symlink("sub/hello.txt", netvol.path / "link")
    assert os.readlink(netvol.backing / "link") == "sub/hello.txt"
    assert (netvol.path / "link").read_text() == "hello"
    counts = netvol.counts()
    assert counts["mkdir"] == 1 and counts["create"] == 1 and counts["symlink"] == 1 and counts["readlink"] >= 1


def test_counts_are_exact_for_create_write_close(netvol: NetVol) -> None:  # noqa: F811
    netvol.reset()
    _write_files(netvol.path, FILES)
    first = netvol.reset()
    # Per file: LOOKUP (a getattr: not there yet), CREATE, its GETATTR, one WRITE, FLUSH on close,
    # RELEASE (sent by the kernel after close returned: counts() waits for it), and the
    # GETATTR the kernel sends after a write when the attribute cache is off.
    assert first.by_kind == {
        "getattr": 3 * FILES,
        "create": FILES,
        "write": FILES,
        "flush": FILES,
        "release": FILES,
    }, first
    _write_files(netvol.path, FILES, prefix="again")
    assert netvol.reset() == first
    (netvol.path / "sub").mkdir()
    netvol.reset()
    _write_files(netvol.path / "sub", FILES)
    # One folder deeper: with no cache, every open looks the folder up again.
    assert netvol.reset().by_kind == first.by_kind | {"getattr": 4 * FILES}
    assert netvol.counts().total == 0


def test_reading_a_file_costs_a_fixed_count(netvol: NetVol) -> None:  # noqa: F811
    _write_files(netvol.path, 1)
    netvol.reset()
    assert (netvol.path / "file0.txt").read_text() == "payload\n"
    counts = netvol.reset()
    assert counts["open"] == 1 and counts["read"] >= 1 and counts["release"] == 1, counts


def test_the_kernel_cache_saves_lookups(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    totals = []
    for cache in (0.0, 30.0):
        with mounted(tmp_path / f"b{cache}", tmp_path / f"m{cache}", latency_ms=0, cache_seconds=cache) as volume:
            _write_files(volume.path, 1)
            volume.reset()
            for _ in range(5):
                os.stat(volume.path / "file0.txt")
            totals.append(volume.reset()["getattr"])
    # Off: LOOKUP + GETATTR per stat. On: one GETATTR (the write made the cached size stale), then none.
    assert totals == [10, 1], totals


def _peak_of_parallel_reads(volume: NetVol, threads: int) -> int:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(os.stat, [volume.path / f"d{number}" / "file0.txt" for number in range(threads)]))  # cached now
        volume.reset()
        start = threading.Barrier(threads)

        def read(number: int) -> str:
            start.wait()
            return (volume.path / f"d{number}" / "file0.txt").read_text()

        assert set(pool.map(read, range(threads))) == {"payload\n"}
    return volume.peak()


def test_concurrent_calls_overlap_beyond_libfuse_default_threads(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    threads, peaks = 32, {}
    for max_threads in (10, 64):
        backing = tmp_path / f"b{max_threads}"
        for number in range(threads):  # one folder per file: the kernel serialises calls within a folder
            (backing / f"d{number}").mkdir(parents=True)
            _write_files(backing / f"d{number}", 1)
        options: dict[str, Any] = {"latency_ms": 20, "cache_seconds": 60, "max_threads": max_threads}
        with mounted(backing, tmp_path / f"m{max_threads}", **options) as volume:
            peaks[max_threads] = _peak_of_parallel_reads(volume, threads)
    assert peaks[10] <= 10 < peaks[64], peaks


def test_unmounts_when_the_block_fails(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    mountpoint = tmp_path / "mount"
    with pytest.raises(RuntimeError, match="boom"), mounted(tmp_path / "backing", mountpoint, latency_ms=0):
        holder = open(mountpoint / "held.txt", "w")  # noqa: SIM115 (a busy mount needs the lazy unmount)
        raise RuntimeError("boom")
    assert not os.path.ismount(mountpoint)
    with contextlib.suppress(OSError):  # the file system process is gone: ENOTCONN
        holder.close()
    assert (tmp_path / "backing" / "held.txt").exists()


# --- budgets of today's code -------------------------------------------------------------

PROJECT = "netdemo"
# Modules per wheel: a worker's first import of ``netapp`` imports every one of them.
WHEELS = {"netapp": ["core", "util"], "netlib": ["io"], "netextra": [], "nettiny": []}


def _module(name: str, requires: list[str]) -> str:
    return "".join(f"import {other}\n" for other in requires) + f"NAME = {name!r}\n"


@pytest.fixture
def small_index(tmp_path: Path) -> Iterator[IndexServer]:
    folder = tmp_path / "wheels"
    for name, modules in WHEELS.items():
        requires = ["netlib", "netextra"] if name == "netapp" else []
        files = {f"{name}/__init__.py": _module(name, [m.replace("-", "_") for m in requires])}
        files |= {f"{name}/{module}.py": _module(f"{name}.{module}", []) for module in modules}
        build_wheel(folder, name, "1.0", files=files, requires=requires, top_level=[name])
    with IndexServer(folder) as server:
        yield server


@dataclass(frozen=True)
class Installed:
    layout: VolumeLayout
    first: Counts
    again: Counts


@pytest.fixture
def installed(netvol: NetVol, small_index: IndexServer, tmp_path: Path) -> Installed:  # noqa: F811
    layout = VolumeLayout(netvol.path / "volume")
    layout.root.mkdir()
    project = Projects(tmp_path / "projects").make(PROJECT, {"main": {"packages": ["netapp", "nettiny"]}})

    def run() -> Counts:
        netvol.reset()
        install(layout=layout, project=project, mirror=small_index.url, cache_dir=_uv_cache(), progress=NullProgress())
        return netvol.reset()

    first = run()
    return Installed(layout, first, run())


def _uv_cache() -> Path:
    return Path(os.environ["UV_CACHE_DIR"])  # local disk, as on a pod


_ACTIVATE = """
import sys
sys.path.insert(0, sys.argv[1])
from volume_cli_runtime import activate
activate({project!r}, sys.argv[2], require_models=False)
import netapp.core, netapp.util
"""


def _worker(netvol: NetVol, command: list[str], env: dict[str, str], cwd: Path) -> Counts:  # noqa: F811
    netvol.reset()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return netvol.reset()


# Today's counts (kernel cache off) with ~10% slack. Issue 8's network-volume work lowers
# all four: lower the budget with it, never raise it to let a change through.
BUDGET_FULL_INSTALL = 1840  # measured 1,673 with per-entry packs (1,477 before them; 4,559 before local staging)
BUDGET_NOOP_INSTALL = 73  # measured 66: the goal is a handful
BUDGET_IMPORT_THROUGH_ENV = 700  # measured 639, 30 of them readlink through the forest's symlinks
BUDGET_IMPORT_THROUGH_ACTIVATE = 910  # measured 830, incl. writing the runtime copy's own bytecode


def _within(counts: Counts, budget: int) -> None:
    assert counts.total <= budget, f"{counts} is over the budget of {budget} operations"


def test_budget_full_install(installed: Installed) -> None:
    assert installed.first["create"] > 0 and installed.first["symlink"] > 0
    _within(installed.first, BUDGET_FULL_INSTALL)


def test_budget_noop_install(installed: Installed) -> None:
    assert installed.again["create"] == installed.again["write"] == installed.again["rename"] == 0
    _within(installed.again, BUDGET_NOOP_INSTALL)


def test_budget_worker_first_import_through_env(installed: Installed, netvol: NetVol, tmp_path: Path) -> None:  # noqa: F811
    variables = consumer_env(layout=installed.layout, project=PROJECT, python_version=PY, mount=None).variables
    # The volume path (opt-out and fallback); the default local copy: tests/test_netvol_worker.py
    env = {"PATH": os.environ["PATH"], **variables, "VOLUME_CLI_LOCAL_COPY": "0"}
    counts = _worker(netvol, [sys.executable, "-c", "import netapp.core, netapp.util"], env, tmp_path)
    assert counts["readlink"] > 0  # it went through the forest
    _within(counts, BUDGET_IMPORT_THROUGH_ENV)


def test_budget_worker_first_import_through_activate(installed: Installed, netvol: NetVol, tmp_path: Path) -> None:  # noqa: F811
    runtime = write_runtime_copy(installed.layout).parent
    command = [sys.executable, "-c", _ACTIVATE.format(project=PROJECT), str(runtime), str(installed.layout.root)]
    counts = _worker(netvol, command, {"PATH": os.environ["PATH"], "VOLUME_CLI_LOCAL_COPY": "0"}, tmp_path)
    assert counts["readlink"] > 0
    _within(counts, BUDGET_IMPORT_THROUGH_ACTIVATE)


def test_the_skip_reason_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.netvol import mount

    monkeypatch.setattr(mount.shutil, "which", lambda name: None)
    monkeypatch.setattr(mount.os, "geteuid", lambda: 0)
    assert "fusermount3 is missing: apt-get install fuse3" in (mount.unavailable_reason() or "")
    monkeypatch.setattr(mount.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(mount, "_fuse3_flags", lambda: None)
    assert "libfuse3-dev" in (mount.unavailable_reason() or "")
    monkeypatch.setattr(mount.os, "geteuid", lambda: 1000)
    assert "root" in (mount.unavailable_reason() or "")
