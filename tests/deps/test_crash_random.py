"""SIGKILL at random moments of install, rollback and gc: every outcome is consistent.

Consistent means: the stable path imports one whole generation (and every entry its record names, and
the previous generation's, is in the store), ``status`` and the state read through the link agree with
the link, a rerun converges (state.json, no leftovers), and rollback goes exactly one generation back.

A handful of kill points per operation by default; ``VOLUME_CLI_SLOW_TESTS=1`` runs at least 50 each.
Kill times are random (seeded; ``VOLUME_CLI_CRASH_SEED`` replays a run) between the interpreter's
start-up and the end of an unkilled run; the seed and every delay are in the failure message.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Projects, generation_folders
from tests.wheelfactory import IndexServer
from volume_cli.deps import deps_status, gc, install, rollback
from volume_cli.deps.documents import GenerationRecord, generation_record_path, install_intent_path
from volume_cli.deps.forest import current_generation
from volume_cli.deps.record import reconciled_deps
from volume_cli.flows.status import project_status
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.project.definition import ProjectDefinition
from volume_cli.store.documents import read_document
from volume_cli.store.state import read_project_state

from . import racekit
from .helpers import PY, import_values

SLOW = os.environ.get("VOLUME_CLI_SLOW_TESTS") == "1"
KILLS_DEFAULT = int(os.environ.get("VOLUME_CLI_CRASH_KILLS") or 2)
KILLS_SLOW = 50
SEED = int(os.environ.get("VOLUME_CLI_CRASH_SEED") or time.time_ns() % 1_000_000)

SETS: tuple[dict[str, Any], dict[str, Any]] = (
    {"m": {"packages": ["alpha==1.0", "epsilon==1.0"]}},
    {"m": {"packages": ["alpha==2.0", "gamma", "epsilon==3.0"]}},
)
WHOLE = ({"a": "1.0", "e": "1.0"}, {"a": "2.0", "e": "3.0"})  # what each set imports


class Chain:
    """One volume driven through many killed operations."""

    def __init__(
        self, layout: VolumeLayout, projects: Projects, index: IndexServer, cache: Path, op: str, kills: int
    ) -> None:
        self.layout, self.projects, self.index, self.cache, self.op = layout, projects, index, cache, op
        self.kills = kills
        self.rng = random.Random(f"{SEED}-{op}")
        self.problems: list[str] = []
        self.tried = 0
        self.outcomes: Counter[str] = Counter()  # where the kills landed, for the report
        self.turn = 0
        self.startup = _startup_seconds()

    def project(self, which: int) -> ProjectDefinition:
        return self.projects.make("demo", SETS[which])

    def install(self, which: int) -> None:
        install(
            layout=self.layout,
            project=self.project(which),
            mirror=self.index.url,
            cache_dir=self.cache,
            progress=NullProgress(),
        )

    def view(self) -> tuple[str | None, str | None]:
        deps = reconciled_deps(self.layout, "demo", PY, read_project_state(self.layout, "demo"))
        return current_generation(self.layout, "demo", PY), deps.previous_generation if deps else None

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            self.problems.append(f"kill {self.tried} of {self.op} (seed {SEED}): {what}")

    def whole(self, generation: str | None, label: str) -> None:
        record = read_document(generation_record_path(self.layout, "demo", generation or "-"), GenerationRecord)
        self.expect(record is not None, f"{label} generation {generation} has no record")
        if record is not None:
            missing = [e.entry for e in record.entries if not (self.layout.store_dir / e.entry).is_dir()]
            self.expect(not missing, f"{label} generation {generation} lost entries {missing}")
            folder = self.layout.generations_dir("demo", PY) / str(generation)
            self.expect(folder.is_dir(), f"{label} generation {generation} folder is gone")

    def imports(self) -> tuple[dict[str, str], Sequence[Mapping[str, object]]]:
        """What a worker imports through the stable path, and every whole set it may see."""
        return {"a": "alpha.VERSION", "e": "epsilon.VERSION"}, WHOLE

    def installing(self) -> ProjectDefinition:
        """The project the run being killed installs."""
        return self.project(self.turn % 2)

    def consistent(self) -> tuple[str | None, str | None]:
        link, previous = self.view()
        self.expect(link is not None, "no current generation")
        self.whole(link, "current")
        if previous is not None:
            self.whole(previous, "previous")
        expressions, whole = self.imports()
        try:
            values = import_values(self.layout.deps_path("demo", PY), expressions)
            self.expect(values in whole, f"the stable path imports {values}, not one of {whole}")
        except AssertionError as exc:
            self.expect(False, f"the stable path does not import: {exc}")
        definition = self.installing()
        detail = deps_status(layout=self.layout, project=definition, mirror=self.index.url)
        self.expect(
            (detail.current_generation, detail.previous_generation) == (link, previous),
            f"deps status {detail.current_generation, detail.previous_generation} != link {link, previous}",
        )
        status = project_status(self.layout, "demo", definition, mirror=self.index.url)
        self.expect(status.generation == link and not status.problems, f"status {status.generation} {status.problems}")
        return link, previous

    def converged(self) -> None:
        link, previous = self.view()
        state = read_project_state(self.layout, "demo")
        recorded = (state.deps.generation, state.deps.previous_generation) if state and state.deps else None
        self.expect(recorded == (link, previous), f"state.json {recorded} != link {link, previous}")
        self.expect(not install_intent_path(self.layout, "demo").exists(), "an install intent was left")
        leftovers = generation_folders(self.layout, "demo")[1]
        self.expect(not leftovers, f"leftover generations {leftovers}")

    def rollback_is_one_back(self) -> None:
        link, previous = self.view()
        if previous is None:
            return
        back = rollback(layout=self.layout, project=self.project(0), progress=NullProgress())
        self.expect(back.to_generation == previous, f"rollback went to {back.to_generation}, not {previous}")
        self.expect(self.view() == (previous, link), f"after rollback {self.view()} != {(previous, link)}")
        self.consistent()
        rollback(layout=self.layout, project=self.project(0), progress=NullProgress())
        self.expect(self.view() == (link, previous), "a second rollback did not undo the first")

    def kill(self, op: str, argument: str, window: float) -> float:
        delay = self.rng.uniform(self.startup * 0.8, window * 1.1)
        process = racekit.start(op, self.layout, argument, mirror=self.index.url, cache=self.cache)
        try:
            process.wait(timeout=delay)
            self.outcomes["finished before the kill"] += 1
        except subprocess.TimeoutExpired:
            self.outcomes["killed while running"] += 1
        racekit.kill_group(process)
        self.tried += 1
        return delay

    def timed(self, op: str, argument: str) -> float:
        started = time.monotonic()
        code, out = racekit.finish(racekit.start(op, self.layout, argument, mirror=self.index.url, cache=self.cache))
        assert code == 0, out
        return time.monotonic() - started


def _startup_seconds() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import volume_cli.deps, volume_cli.project.discovery"], check=True)
    return time.monotonic() - started


def _install_trials(chain: Chain) -> None:
    chain.install(0)
    chain.install(1)
    # Timed once the uv cache and the store are warm, like every trial after it.
    window = chain.timed("install", str(chain.project(0).folder))
    chain.turn = 0
    for _ in range(chain.kills):
        chain.turn = 1 - chain.turn  # the set to install: the other one
        before = chain.view()
        folder = str(chain.project(chain.turn).folder)
        chain.kill("install", folder, window)
        after = chain.consistent()
        chain.expect(after == before or after[1] == before[0], f"{before} -> {after}: not one switch")
        chain.outcomes["old generation kept" if after == before else "switched"] += 1
        chain.install(chain.turn)  # the rerun
        rerun = chain.view()
        expected_previous = before[1] if rerun[0] == before[0] else before[0]
        chain.expect(rerun[1] == expected_previous, f"{before} -> {rerun}: previous is not one back")
        chain.consistent()
        chain.converged()
        chain.rollback_is_one_back()


def _rollback_trials(chain: Chain) -> None:
    chain.install(0)
    chain.install(1)
    window = chain.timed("rollback", str(chain.project(1).folder))
    for _ in range(chain.kills):
        before = chain.view()
        chain.kill("rollback", str(chain.project(1).folder), window)
        after = chain.consistent()
        chain.expect(after in (before, (before[1], before[0])), f"{before} -> {after}: not one switch")
        chain.outcomes["old generation kept" if after == before else "switched"] += 1
        back = rollback(layout=chain.layout, project=chain.project(1), progress=NullProgress())  # the rerun
        chain.expect(back.to_generation == after[1], f"rollback from {after} went to {back.to_generation}")
        chain.expect(chain.view() == (after[1], after[0]), f"after rollback {chain.view()}")
        chain.consistent()
        chain.converged()


def _gc_trials(chain: Chain) -> None:
    chain.install(0)
    chain.install(1)
    chain.install(0)
    window = chain.timed("gc", "0")
    for index in range(chain.kills):
        chain.turn = (index + 1) % 2
        chain.install(chain.turn)  # a generation more: the oldest becomes garbage
        before = chain.view()
        records = chain.layout.project_state_dir("demo") / "generations"
        count = len(os.listdir(records))
        chain.kill("gc", "0", window)
        chain.expect(chain.consistent() == before, "gc changed the current or previous generation")
        chain.outcomes["garbage left" if len(os.listdir(records)) == count else "some garbage removed"] += 1
        gc(layout=chain.layout, grace_seconds=0, dry_run=False, progress=NullProgress())  # the rerun
        chain.consistent()
        chain.converged()
        kept = sorted(
            n.removesuffix(".json") for n in os.listdir(chain.layout.project_state_dir("demo") / "generations")
        )
        chain.expect(kept == sorted(filter(None, before)), f"gc kept {kept}, expected {before}")
        trash = [n for n in os.listdir(chain.layout.store_dir) if n.startswith(".")]
        chain.expect(not trash, f"store leftovers {trash}")
        chain.rollback_is_one_back()


def _run(op: str, kills: int, layout: VolumeLayout, projects: Projects, index: IndexServer, cache: Path) -> None:
    chain = Chain(layout, projects, index, cache, op, kills)
    {"install": _install_trials, "rollback": _rollback_trials, "gc": _gc_trials}[op](chain)
    landed = ", ".join(f"{name}: {count}" for name, count in sorted(chain.outcomes.items()))
    print(f"{op}: {chain.tried} random kills (seed {SEED}), {len(chain.problems)} inconsistent ({landed})")
    assert chain.tried >= kills
    assert not chain.problems, "\n".join(chain.problems)


@pytest.mark.parametrize("op", ["install", "rollback", "gc"])
def test_random_kills_leave_a_consistent_volume(
    op: str, layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    _run(op, KILLS_DEFAULT, layout, projects, index, isolated_uv)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not SLOW, reason="set VOLUME_CLI_SLOW_TESTS=1 for 50 random kills per operation")
@pytest.mark.parametrize("op", ["install", "rollback", "gc"])
def test_many_random_kills_leave_a_consistent_volume(
    op: str, layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    _run(op, KILLS_SLOW, layout, projects, index, isolated_uv)


_KILLED_WHILE_LOCKING = """
import os, signal, sys
from pathlib import Path
from volume_cli.store.lock import LeaseLock, LockRecord
LockRecord.model_dump_json = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # killed mid-acquire
LeaseLock(Path(sys.argv[1]), command="deps rollback").acquire()
"""


def test_a_run_killed_while_taking_a_lock_does_not_block_the_next_one(tmp_path: Path) -> None:
    # Found by the random kills: a holder killed between creating the lock file and writing its record
    # left an empty file that blocked every run for a whole lease as "unknown (unreadable lock file)".
    from volume_cli.store.lock import LeaseLock

    path = tmp_path / "locks" / "demo.lock"
    path.parent.mkdir()
    killed = subprocess.run([sys.executable, "-c", _KILLED_WHILE_LOCKING, str(path)], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    with LeaseLock(path, command="deps rollback", wait_seconds=0):
        pass
