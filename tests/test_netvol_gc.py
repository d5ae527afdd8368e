"""``gc`` on the simulated network volume: operation budgets, and the guarantees kept while it runs concurrently.

Budgets are operation counts with the kernel cache off (see tests/test_netvol_budgets.py), so
they depend only on the calls the code makes. Two projects share entries; the first one's
upgrades leave old generations and entries behind, then its requirements drop big packages.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Projects, build_shaped_wheels
from tests.netvol.fixture import netvol, netvol_options  # noqa: F401 (fixtures)
from tests.netvol.mount import Counts, NetVol, mounted, unavailable_reason
from tests.wheelfactory import IndexServer
from volume_cli.deps import gc, install
from volume_cli.deps.gc import GcReport
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

# name -> (subpackages, modules per subpackage)
SHAPES = {"gcbig": (6, 6), "gcmid": (3, 4), "gcshared": (2, 3), "gcleaf": (1, 2)}
OTHER = "gcother"  # a second project: what it uses stays whatever the first one drops


@pytest.fixture
def netvol_options() -> dict[str, Any]:  # noqa: F811 (this module's settings)
    return {"latency_ms": 0.0, "cache_seconds": 0.0}


@pytest.fixture
def wheel_index(tmp_path: Path) -> Iterator[IndexServer]:
    folder = tmp_path / "wheels"
    build_shaped_wheels(folder, SHAPES, upgraded="gcleaf")
    with IndexServer(folder) as server:
        yield server


class PhaseProgress(NullProgress):
    """Counts the volume's operations per gc phase (each ``step`` starts one)."""

    def __init__(self, volume: NetVol) -> None:
        super().__init__()
        self.volume = volume
        self.phases: dict[str, Counts] = {}
        self.current = "start"
        self.peak = 0  # the most calls in flight at once

    def step(self, message: str) -> None:
        super().step(message)
        self.peak = max(self.peak, self.volume.peak())
        self.phases[self.current] = self.volume.reset()
        self.current = message


@dataclass
class Volume:
    netvol: NetVol | None  # None: the volume is a plain folder (no counting)
    layout: VolumeLayout
    projects: Projects
    index: IndexServer
    generations: list[str | None] = field(default_factory=list)

    def install(self, name: str, packages: list[str]) -> None:
        project = self.projects.make(name, {"main": {"packages": packages}})
        result = install(
            layout=self.layout, project=project, mirror=self.index.url, cache_dir=_uv_cache(), progress=NullProgress()
        )
        self.generations.append(result.generation)

    def gc(self, **options: Any) -> tuple[GcReport, Counts, PhaseProgress]:
        assert self.netvol is not None
        progress = PhaseProgress(self.netvol)
        self.netvol.reset()
        started = time.monotonic()
        report = gc(layout=self.layout, grace_seconds=0, dry_run=False, progress=progress, **options)
        elapsed = time.monotonic() - started
        progress.step("end")
        phases = {name: counts for name, counts in progress.phases.items() if counts.total}
        total = sum((counts.total for counts in phases.values()), 0)
        print(f"gc {options}: {total} operations in {elapsed:.2f} s")
        for name, counts in phases.items():
            print(f"  {name}: {counts}")
        return report, Counts(_sum(phases.values())), progress


def _sum(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for kind, number in one.by_kind.items():
            total[kind] = total.get(kind, 0) + number
    return total


def _uv_cache() -> Path:
    return Path(os.environ["UV_CACHE_DIR"])  # local disk, as on a pod


@pytest.fixture
def volume(netvol: NetVol, wheel_index: IndexServer, tmp_path: Path) -> Volume:  # noqa: F811
    layout = VolumeLayout(netvol.path / "volume")
    layout.root.mkdir()
    return Volume(netvol, layout, Projects(tmp_path / "projects"), wheel_index)


def _upgrades(volume: Volume) -> None:
    """Three generations of the first project (a leaf upgraded, a package removed), one of the other."""
    volume.install(OTHER, ["gcshared"])
    volume.install("gcdemo", ["gcbig", "gcmid", "gcshared", "gcleaf==1.0"])
    volume.install("gcdemo", ["gcbig", "gcmid", "gcshared", "gcleaf==2.0"])
    volume.install("gcdemo", ["gcbig", "gcshared", "gcleaf==2.0"])


def _store(layout: VolumeLayout) -> list[str]:
    return sorted(name for name in os.listdir(layout.store_dir) if not name.startswith("."))


def test_budget_gc_after_upgrades(volume: Volume) -> None:
    _upgrades(volume)
    report, counts, _ = volume.gc(drop_previous=True)
    assert len(report.generations_removed) == 2
    assert sorted(name.split("-")[0] for name in report.entries_removed) == ["gcleaf", "gcmid"]
    assert counts.total <= BUDGET_AFTER_UPGRADES, counts


def test_budget_gc_of_most_of_the_store(volume: Volume) -> None:
    _upgrades(volume)
    volume.install("gcdemo", ["gcleaf==2.0"])
    report, counts, _ = volume.gc(drop_previous=True)
    assert len(report.generations_removed) == 3
    assert sorted(name.split("-")[0] for name in report.entries_removed) == ["gcbig", "gcleaf", "gcmid"]
    assert [name.split("-")[0] for name in _store(volume.layout)] == ["gcleaf", "gcshared"]
    assert counts.total <= BUDGET_MOST_OF_THE_STORE, counts


def test_budget_gc_with_nothing_to_remove(volume: Volume) -> None:
    _upgrades(volume)
    volume.gc(drop_previous=True)
    report, counts, _ = volume.gc(drop_previous=True)
    assert report.generations_removed == report.entries_removed == ()
    assert counts.total <= BUDGET_NOTHING, counts


def test_gc_overlaps_its_calls_and_one_thread_makes_it_serial(
    tmp_path: Path, wheel_index: IndexServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same removal twice (one copy of the volume each): one thread, then the default.

    ``VOLUME_CLI_PUBLISH_THREADS=1`` is the serial reference the benchmark compares gc with:
    one call at a time, the same calls.
    """
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    backing = tmp_path / "backing"
    # Made on local disk, then served with latency: the installs would cost more than the gc.
    local = Volume(None, VolumeLayout(backing / "volume"), Projects(tmp_path / "projects"), wheel_index)
    local.layout.root.mkdir(parents=True)
    _upgrades(local)
    local.install("gcdemo", ["gcleaf==2.0"])
    shutil.copytree(backing / "volume", backing / "copy", symlinks=True)
    peaks, totals = [], []
    with mounted(backing, tmp_path / "mount", latency_ms=1.0, cache_seconds=0.0) as served:
        for threads, root in (("1", "copy"), ("", "volume")):
            monkeypatch.setenv("VOLUME_CLI_PUBLISH_THREADS", threads)
            volume = Volume(served, VolumeLayout(served.path / root), local.projects, wheel_index)
            report, counts, progress = volume.gc(drop_previous=True)
            assert len(report.entries_removed) == 3
            peaks.append(progress.peak)
            totals.append(counts.total)
    # One thread: a RELEASE the kernel sends after close returned may overlap the next call.
    assert peaks[0] <= 2, f"one thread: {peaks[0]} calls were in flight at once"
    assert peaks[1] >= 8, f"only {peaks[1]} calls were ever in flight at once"
    assert totals[0] == totals[1], "the serial reference makes the same calls"


# Measured with the kernel cache off, +~10%. Before gc read and removed concurrently (one
# scandir and a stat per name before each unlink, one gc pass to plan and one to remove):
# 999 after the upgrades, 1,601 for most of the store, 419 with nothing to remove.
BUDGET_AFTER_UPGRADES = 855  # measured 777: 2 generations, 2 entries, 73 files and links
BUDGET_MOST_OF_THE_STORE = 1265  # measured 1,148: 3 generations, 3 entries, 173 files and links
BUDGET_NOTHING = 410  # measured 387 (+6%: the code before measured 419): the locks, states, intents, records, listings
