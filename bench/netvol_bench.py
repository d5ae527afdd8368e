"""The deps benchmark on the simulated network volume: volume-cli, raw uv and pip, time and operations.

Run by hand as root, never in CI (it downloads real wheels from PyPI once)::

    .venv/bin/python bench/netvol_bench.py [--set small|full] [--runs 3] [--tools ...] [--save F] [--load F]

The volume is tests/netvol: a passthrough FUSE file system (tests/netvol/netvolfs.c, a C server
built on first use, so the simulator's own CPU stays small) that sleeps ``--latency-ms`` in
every operation, with the kernel's attribute/entry cache at ``--cache-seconds`` (mfsmount's
default is 1 s). Operations are what the file system served (lookups count as getattr), so
they are only the calls that reached the volume, never pipe traffic or local files.

Each tool keeps its temp and cache where a pod keeps them, on local disk (uv's cache, warm;
pip's TMPDIR and cache), and writes its target on the volume. Each run installs into fresh
targets, tools interleaved (the order rotates every run); cells are medians over ``--runs``.
Steps: full install, no-op, one leaf upgraded, one package removed (pip cannot uninstall
from --target: n/a), a worker's cold import (volume-cli: with only what ``volume-cli env``
prints; uv and pip: their plain folder on PYTHONPATH; "local disk": a uv --target folder on
local disk), and for volume-cli ``deps check --no-imports`` and ``gc``, each with one thread
(``VOLUME_CLI_PUBLISH_THREADS=1``: the serial reference, the same code measured in the same run)
and with the default, interleaved. gc runs twice, each time on a fresh copy of the volume per
thread setting: after the steps above (the old generations, the old leaf and the removed
package's entries go) and after the requirements then drop the big packages (most of the
store goes); besides the process's time, the time spent in its ``gc()`` call is shown.

The pod's local disk (caches, temp, volume-cli's staging folder, the worker's local copy, the
"local disk" target) is a journaled ext4 made for the benchmark (``--disk fresh``, the default;
bench/freshdisk.py says why: this machine's own disk is an aged ext4 without a journal, whose
inode allocation made every create after a mass removal slow), and each tool's run mounts a
simulated volume of its own, its backing on an ext4 of its own (``run_benchmark`` says why);
``--disk here`` keeps them all on the disk of ``--work``. Before each measured step a child writes
``--touch-memory-gb`` of memory (4 by default), so no step pays for pages the VM handed back to its
host (``settle()`` says why).

``--save F`` writes every sample as JSON; ``--load F`` adds the tools saved in F to this
run's table (a tool measured in both is shown as "<tool> (baseline)"). So raw uv and pip, measured
once, combine with a later volume-cli run::

    .venv/bin/python bench/netvol_bench.py --set full --runs 2 --tools volume-cli --load bench/results/netvol-full-2026-12-01.json
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchtable import (  # noqa: E402
    ENTRIES,
    LOCAL,
    PIP,
    UV,
    VOLUME_CLI,
    Goal,
    Results,
    load_into,
    render_goals,
    render_sources,
    render_table,
    save,
)
from benchtable import GOALS as BENCH_GOALS  # noqa: E402
from freshdisk import DEFAULT_SIZE_GB, DISKS, fresh_disk  # noqa: E402
from wheelsets import FULL, SMALL, WheelSet, ensure_wheelhouse, make_project, small_wheelhouse  # noqa: E402

from tests.netvol.mount import NetVol, mounted, unavailable_reason  # noqa: E402
from tests.wheelfactory import IndexServer  # noqa: E402
from volume_cli.deps.scratch import SCRATCH_ENV  # noqa: E402

TOOLS = (VOLUME_CLI, UV, PIP, LOCAL)
PROJECT = "bench"
THREADS_ENV = "VOLUME_CLI_PUBLISH_THREADS"  # volume_cli/parallel.py: calls in flight on the volume
SERIAL = "volume-cli, 1 thread"
THREAD_SETTINGS = [(SERIAL, {THREADS_ENV: "1"}), (VOLUME_CLI, {THREADS_ENV: ""})]  # "": the default
GC_MOST = "gc, most of the store"
CALL = "(the gc() call)"  # the same run without the process's start: Python, imports, option parsing
# `volume-cli gc ...` with the time spent in volume_cli.deps.gc() written to $BENCH_GC_CALL_FILE.
GC_DRIVER = """\
import os, sys, time
import volume_cli.deps
from volume_cli.cli.main import run
collect = volume_cli.deps.gc
def timed(**options):
    started = time.monotonic()
    try:
        return collect(**options)
    finally:
        with open(os.environ["BENCH_GC_CALL_FILE"], "a") as out:
            out.write(f"{time.monotonic() - started}\\n")
volume_cli.deps.gc = timed
run(sys.argv[1:])
"""
BIG = {"numpy", "scipy", "pandas", "scikit-learn", "transformers"}
VOLUME_DISK_GB = 16  # sparse; a tool run writes ~1-2 GB on its volume (targets, gc's copies are hard links)
GOALS = (
    *(goal for goal in BENCH_GOALS if goal.ours[1] not in ("deps check", "gc")),
    Goal("deps check ≤ 0.2× serial (the same code, 1 thread)", (VOLUME_CLI, "deps check"), (SERIAL, "deps check"), 0.2),
    Goal("gc after the upgrades ≤ 0.2× serial", (VOLUME_CLI, "gc"), (SERIAL, "gc"), 0.2),
    Goal("gc of most of the store ≤ 0.2× serial", (VOLUME_CLI, GC_MOST), (SERIAL, GC_MOST), 0.2),
    Goal("gc() call after the upgrades ≤ 0.2× serial", (VOLUME_CLI, f"gc {CALL}"), (SERIAL, f"gc {CALL}"), 0.2),
    Goal(
        "gc() call, most of the store ≤ 0.2× serial",
        (VOLUME_CLI, f"{GC_MOST} {CALL}"),
        (SERIAL, f"{GC_MOST} {CALL}"),
        0.2,
    ),
)


class Counter(Protocol):
    """Where the targets go and how a command is measured: its time and the operations on that folder."""

    @property
    def path(self) -> Path:
        """Where each tool's target is made."""

    @property
    def backing(self) -> Path:
        """Where its files really are (the same folder, except behind a FUSE mount)."""

    def run(self, command: list[str], env: dict[str, str]) -> tuple[float | None, int | None]: ...


def checked(command: list[str], env: dict[str, str], *, prefix: list[str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run([*(prefix or []), *command], env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} failed:\n{done.stdout[-1000:]}\n{done.stderr[-2000:]}")
    return elapsed


class Unmounted:
    """The benchmark's volume before a tool's run has mounted its own (warming the caches needs none)."""

    @property
    def path(self) -> Path:
        raise RuntimeError("no volume is mounted outside a tool's run")

    @property
    def backing(self) -> Path:
        raise RuntimeError("no volume is mounted outside a tool's run")

    def run(self, command: list[str], env: dict[str, str]) -> tuple[float | None, int | None]:
        raise RuntimeError("no volume is mounted outside a tool's run")


@dataclass(frozen=True)
class VolumeCounter:
    """The simulated volume counts what it served: only calls that reached it, never pipes or local files."""

    volume: NetVol

    @property
    def path(self) -> Path:
        return self.volume.path

    @property
    def backing(self) -> Path:
        return self.volume.backing

    def run(self, command: list[str], env: dict[str, str]) -> tuple[float | None, int | None]:
        self.volume.reset()
        elapsed = checked(command, env)
        return elapsed, self.volume.reset().total


@dataclass(frozen=True)
class Bench:
    """One benchmark's fixed inputs: where things are and how each tool is called."""

    counter: Counter
    work: Path  # local disk
    wheels: WheelSet
    index_url: str
    uv: str
    env: dict[str, str]
    cache_seconds: float
    memory_gb: float = 0.0  # touched before each measured step: settle() says why

    @property
    def projects(self) -> Path:
        return self.work / "projects"

    def measured(self, command: list[str], env: dict[str, str] | None = None) -> tuple[float | None, int | None]:
        return self.counter.run(command, env or self.env)

    def volume_cli(self, *arguments: str) -> list[str]:
        return [sys.executable, "-m", "volume_cli", *arguments]

    def install_command(self, tool: str, target: Path, step: str) -> list[str] | None:
        requirements = self.wheels.requirements(step)
        if tool == VOLUME_CLI:
            make_project(self.projects / PROJECT, requirements)
            common = ("--root", str(target), "--projects-dir", str(self.projects))
            return self.volume_cli("deps", "install", "-p", PROJECT, *common, "--index-url", self.index_url, "-q")
        if tool == UV:
            if step == "one package removed":
                return [
                    self.uv,
                    "pip",
                    "uninstall",
                    "--python",
                    sys.executable,
                    "--target",
                    str(target),
                    self.wheels.removed,
                ]
            command = [
                self.uv,
                "pip",
                "install",
                "-q",
                "--target",
                str(target),
                "--compile-bytecode",
                "--link-mode",
                "copy",
            ]
            return [*command, "--python", sys.executable, "--index-url", self.index_url, *requirements]
        if step == "one package removed":
            return None  # pip cannot uninstall from a --target folder
        upgrade = [] if step == "full install" else ["--upgrade"]
        command = [sys.executable, "-m", "pip", "install", "-q", "--no-input", "--target", str(target), *upgrade]
        return [*command, "--index-url", self.index_url, *requirements]

    def worker_env(self, tool: str, target: Path) -> dict[str, str]:
        """What a worker starts with: volume-cli's `env` output, or the plain folder on PYTHONPATH."""
        if tool != VOLUME_CLI:
            return {"PATH": os.environ["PATH"], "PYTHONPATH": str(target)}
        command = self.volume_cli("env", "-p", PROJECT, "--root", str(target), "--projects-dir", str(self.projects))
        command += ["--local-cache", str(self.work / "worker-cache")]  # the worker's local disk: the bench's
        printed = subprocess.run([*command, "--json"], env=self.env, capture_output=True, text=True, check=True)
        return {"PATH": os.environ["PATH"], **json.loads(printed.stdout)}

    def cold_import(self, tool: str, target: Path) -> tuple[float | None, int | None]:
        env = self.worker_env(tool, target)
        settle(self, expire_caches=True)  # a cold worker
        return self.measured([sys.executable, "-c", self.wheels.imports], env)


def files_under(folder: Path) -> int:
    return sum(len(files) + len(dirs) for _, dirs, files in os.walk(folder))


INSTALL_STEPS = ("full install", "no-op", "one leaf upgraded", "one package removed")


def run_tool(bench: Bench, results: Results, tool: str, run: int) -> None:
    """One tool's steps in order, each on the state the previous one left, in a fresh target."""
    if tool == LOCAL:
        target = bench.work / f"local-run{run}"
        command = bench.install_command(UV, target, "full install")
        assert command is not None
        subprocess.run(command, env=bench.env, check=True, capture_output=True)
        settle(bench)
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", bench.wheels.imports], env=bench.worker_env(UV, target), check=True)
        results.add(LOCAL, "cold import", time.monotonic() - started, None)
        shutil.rmtree(target)
        return
    name = f"run{run}-{tool.split()[0]}"
    target = bench.counter.path / name
    target.mkdir()
    for step in INSTALL_STEPS:
        command = bench.install_command(tool, target, step)
        if command is not None:
            settle(bench)
            results.add(tool, step, *bench.measured(command))
        if step == "full install":
            results.add(tool, ENTRIES, 0.0, files_under(bench.counter.backing / name))
    results.add(tool, "cold import", *bench.cold_import(tool, target))
    if tool == VOLUME_CLI:  # the first start made the local copy; a later process on this machine uses it
        results.add(tool, "cold import, copy present", *bench.cold_import(tool, target))
        serial_and_concurrent(bench, results, target, run)


def settle(bench: Bench, *, expire_caches: bool = False, limit: float = 120.0) -> None:
    """Each step starts on a quiet machine, whatever the step before left running.

    After a full install volume-cli's detached ``rm -rf`` of its local staging folder (19k files)
    runs for 1-3 s, and the kernel writes back what every tool wrote for up to 30 s; both ran
    during the next step (no-op, one leaf) and made it 0.1-0.6 s slower at random.
    ``expire_caches``: then wait until the kernel's attribute and entry caches of the volume expire.

    Last, ``bench.memory_gb`` of memory is touched by a child process that then exits: on a VM
    whose balloon hands free memory back to its host (free page reporting, as on the Firecracker
    VMs here), the first touch of each such page costs a fault in the host, ~10 µs per 4 KB page.
    A step that fills fresh page cache paid it (the worker's first start, ~1 GB: up to +1.4 s, as
    the host had the pages or not), a step that reads a warm cache did not (the local disk's import). A GPU pod's memory is backed
    (bare metal, or pinned for the GPU's passthrough), so each step starts with backed free pages.
    """
    scratch = Path(bench.env[SCRATCH_ENV])
    deadline = time.monotonic() + limit
    while scratch.is_dir() and any(scratch.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.sync()
    if expire_caches:
        time.sleep(bench.cache_seconds + 0.5)
    touch_memory(bench.memory_gb)


def touch_memory(gb: float) -> None:
    """Write one byte in every page of ``gb`` GB (at most half the memory available) in a child that exits."""
    if gb <= 0:
        return
    size = min(int(gb * 2**30), available_memory() // 2)
    toucher = "import sys; b = bytearray(int(sys.argv[1])); b[::4096] = b'\\1' * len(b[::4096])"
    subprocess.run([sys.executable, "-c", toucher, str(size)], check=True)


def add_touch_memory_option(parser: argparse.ArgumentParser) -> None:
    """``--touch-memory-gb``, shared by every benchmark that times a step on this VM."""
    parser.add_argument(
        "--touch-memory-gb",
        type=float,
        default=4.0,
        help="memory written by a child before each measured step (settle() says why); 0: none",
    )


def available_memory() -> int:
    """MemAvailable from /proc/meminfo in bytes, or 0 off Linux."""
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def free_page_reporting() -> str:
    """What this machine's kernel says about handing free memory back to its host, for the report."""
    parameters = Path("/sys/module/page_reporting/parameters")
    try:
        order = (parameters / "page_reporting_order").read_text().strip()
    except OSError:
        return "no free page reporting"
    try:
        handed_back = int((parameters / "reported_kib").read_text()) / 2**20
    except (OSError, ValueError):
        return f"free page reporting (order {order})"
    return f"free page reporting (order {order}, {handed_back:.0f} GB handed back since boot)"


def serial_and_concurrent(bench: Bench, results: Results, target: Path, run: int) -> None:
    """``deps check`` and two gc cases, each with one thread (the serial reference) and the default, interleaved.

    The reference is the same code with ``VOLUME_CLI_PUBLISH_THREADS=1`` (every concurrent
    reading, hashing, renaming and removal then runs one call at a time), measured now on the
    same volume. gc removes, so each of its runs gets its own copy of the volume (hard links,
    made in the backing folder: the mount has never seen it, so its caches are cold).
    """
    order = THREAD_SETTINGS if run % 2 == 0 else THREAD_SETTINGS[::-1]
    check = bench.volume_cli(
        "deps", "check", "-p", PROJECT, "--root", str(target), "--projects-dir", str(bench.projects)
    )
    for label, env in order:
        settle(bench, expire_caches=True)  # each run reads the volume
        results.add(label, "deps check", *bench.measured([*check, "--no-imports", "-q"], bench.env | env))
    gc_copies(bench, results, target, "gc", order)
    # The project's requirements then drop its big packages: most of the store is no longer used.
    command = bench.install_command(VOLUME_CLI, target, "one package removed")
    assert command is not None
    make_project(bench.projects / PROJECT, big_packages_dropped(bench.wheels))
    checked(command, bench.env)
    gc_copies(bench, results, target, GC_MOST, order)


def gc_copies(bench: Bench, results: Results, target: Path, step: str, order: list[tuple[str, dict[str, str]]]) -> None:
    """``volume-cli gc`` on a fresh copy per run: the process's time and operations, and its ``gc()`` call's time."""
    for label, env in order:
        name = f"{target.name}-{step}-{label}".replace(" ", "-").replace(",", "")
        copy = ["cp", "-al", str(bench.counter.backing / target.name), str(bench.counter.backing / name)]
        subprocess.run(copy, check=True)
        call_file = bench.work / f"{name}.call"
        gc = [sys.executable, "-c", GC_DRIVER, "gc", "--root", str(bench.counter.path / name), "--grace-hours", "0"]
        settle(bench, expire_caches=True)
        run_env = bench.env | env | {"BENCH_GC_CALL_FILE": str(call_file)}
        results.add(label, step, *bench.measured([*gc, "--drop-previous", "-y", "-q"], run_env))
        results.add(label, f"{step} {CALL}", sum(map(float, call_file.read_text().split())), None)
        shutil.rmtree(bench.counter.backing / name)
        call_file.unlink()


def big_packages_dropped(wheels: WheelSet) -> list[str]:
    """The last step's requirements without the big packages (all but the leaf where the set has none)."""
    kept = [name for name in wheels.requirements("one package removed") if name.split("=")[0] not in BIG]
    return kept if len(kept) < len(wheels.requirements("one package removed")) else [wheels.leaf_new]


def warm_caches(bench: Bench, tools: list[str]) -> None:
    """uv's and pip's caches on local disk hold every wheel: each run measures installing, not downloading.

    volume-cli installs each locked artifact by its URL, which uv caches apart from the same wheel
    fetched through the index, so it warms its own entries with an install onto local disk (without
    that, its first full install downloaded 360 MB that raw uv's did not). pip's cache is warmed only
    when pip runs.
    """
    for step in ("full install", "one leaf upgraded"):
        for tool in (UV, *([PIP] if PIP in tools else []), *([VOLUME_CLI] if VOLUME_CLI in tools else [])):
            warm = bench.work / "warm" / tool.split()[0]
            warm.mkdir(parents=True, exist_ok=True)
            command = bench.install_command(tool, warm, step)
            assert command is not None
            subprocess.run(command, env=bench.env, check=True, capture_output=True)
    shutil.rmtree(bench.work / "warm")


def run_benchmark(
    bench: Bench,
    results: Results,
    tools: list[str],
    runs: int,
    volumes: Callable[[str], contextlib.AbstractContextManager[Counter]],
    after_each: Callable[[], None] = lambda: None,
) -> None:
    """``runs`` rounds of every tool, the order rotating; ``after_each`` tool (to save what is measured so far).

    Each tool's run gets a volume of its own (``volumes``): the simulated volume's server spends more
    of the pod's CPU per call as its backing disk fills (a full install's 124k calls: 2.65 s of kernel
    time on a fresh disk, 5.30 s two installs later), so on one volume for the whole benchmark every
    run after the first was charged for the simulator's disk. The worker's copies of that volume's
    generations go with it.
    """
    warm_caches(bench, tools)
    for run in range(runs):
        shift = run % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            before, started = machine_seconds(), time.monotonic()
            with volumes(f"volume-run{run + 1}-{tool.split()[0]}") as counter:
                run_tool(replace(bench, counter=counter), results, tool, run)
            shutil.rmtree(bench.work / "worker-cache", ignore_errors=True)
            spent = [after - first for after, first in zip(machine_seconds(), before, strict=True)]
            # Time the hypervisor gave to others (steal) slows every step at random: said, not corrected.
            print(
                f"run {run + 1}/{runs}: {tool} done in {time.monotonic() - started:.0f} s "
                f"(the machine's CPU: {spent[0]:.1f} s busy, {spent[1]:.1f} s stolen by the hypervisor)",
                file=sys.stderr,
                flush=True,
            )
            after_each()


def machine_seconds() -> tuple[float, float]:
    """CPU-seconds the machine has been busy and had stolen (all cores, /proc/stat), or zeros off Linux."""
    try:
        with open("/proc/stat") as stream:
            fields = [int(value) for value in stream.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    busy = sum(fields[:3]) + sum(fields[5:7])  # user, nice, system, irq, softirq
    steal = fields[7] if len(fields) > 7 else 0
    return busy / tick, steal / tick


def bench_env(work: Path, tmp: Path | None = None) -> dict[str, str]:
    """Caches and temp on local disk, as on a pod; nothing from this machine's pip config."""
    tmp = tmp or work / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    # volume-cli runs as installed, with its bytecode (a pod's shell does not set this; a shell here did, and
    # each run then compiled 68 of volume-cli's own modules: ~0.3 s of every one-leaf install).
    inherited = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    compileall.compile_dir(REPO / "volume_cli", quiet=1)
    return dict(
        inherited,
        UV_CACHE_DIR=str(work / "uv-cache"),
        VOLUME_CLI_UV_CACHE=str(work / "uv-cache"),
        VOLUME_CLI_LOCAL_CACHE=str(work / "local-cache"),
        **{SCRATCH_ENV: str(work / "scratch")},  # named, so that settle() knows where to look
        UV_PYTHON_DOWNLOADS="never",
        PIP_CACHE_DIR=str(work / "pip-cache"),
        PIP_CONFIG_FILE=os.devnull,
        PIP_FIND_LINKS="",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        TMPDIR=str(tmp),
        PYTHONPATH=str(REPO),
    )


@contextlib.contextmanager
def local_disk(where: Path, disk: str, *, size_gb: int = DEFAULT_SIZE_GB) -> Iterator[Path]:
    """The pod's local disk, or a tool run's volume backing: ``where`` or a fresh ext4 in it."""
    if disk == "here":
        yield where
        return
    with fresh_disk(where, size_gb=size_gb) as mounted_disk:
        yield mounted_disk


def commit() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def report(results: Results, args: argparse.Namespace, tools: list[str]) -> None:
    columns = [tool for tool in [*TOOLS, *results.samples] if tool in results.samples]
    columns = list(dict.fromkeys(columns))
    load = os.getloadavg()
    print(f"\n{render_table(results, columns)}")
    runs = ", ".join(f"{tool} {results.runs(tool)}" for tool in columns)
    if not tools:  # only loaded files: where each came from is below the table
        print(f"Medians of interleaved runs ({runs}), min–max of time in brackets.")
        print(render_sources(results, columns))
        print(render_goals(results, GOALS))
        return
    print(f"Measured {datetime.date.today()} at commit {commit()}: medians of interleaved runs ({runs}) ", end="")
    print(
        f"(min–max of time in brackets), {args.latency_ms:g} ms per operation, {args.cache_seconds:g} s kernel cache, "
    )
    disk = "fresh journaled ext4s (bench/freshdisk.py)" if args.disk == "fresh" else "the disk of --work"
    print(f"local disk and each tool run's own volume backing on {disk}, ", end="")
    print(f"{args.touch_memory_gb:g} GB of memory touched before each step ({free_page_reporting()}), ", end="")
    print(
        f"{os.cpu_count()} cores, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the end; tools run here: {', '.join(tools)}."
    )
    print(render_sources(results, columns))
    print(render_goals(results, GOALS))


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("small", "full"), default="small")
    parser.add_argument("--runs", type=int, default=3, help="0: only render the tables of --load")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS), metavar="TOOL")
    parser.add_argument("--save", type=Path, default=None, help="write every sample as JSON")
    parser.add_argument("--load", type=Path, action="append", default=[], help="add the tools saved by --save")
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--cache-seconds", type=float, default=1.0)
    add_touch_memory_option(parser)
    parser.add_argument("--wheelhouse", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder on local disk (default: a temp dir)")
    parser.add_argument(
        "--disk",
        choices=DISKS,
        default="fresh",
        help="fresh: local disk and the volume's backing on a new journaled ext4 (bench/freshdisk.py); here: --work's disk",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    wheels = SMALL if args.set == "small" else FULL
    results = Results(f"{wheels.name}, {args.latency_ms:g} ms per operation, {args.cache_seconds:g} s cache")
    tools = list(dict.fromkeys(args.tools))  # the order given is the first run's order
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    options = {"latency_ms": args.latency_ms, "cache_seconds": args.cache_seconds}
    memory = {"touch_memory_gb": args.touch_memory_gb, "memory": free_page_reporting()}

    def save_so_far() -> None:
        if args.save is not None:
            meta = {"date": str(datetime.date.today()), "commit": commit(), "set": args.set, "disk": args.disk}
            save(results, args.save, meta=meta | options | memory | {"loadavg": os.getloadavg()})

    if args.runs > 0:  # --runs 0 only renders --load: no volume, no wheels, no temp folder
        reason = unavailable_reason()
        if reason is not None:
            raise SystemExit(f"the simulated volume is unavailable: {reason}")
        cache_root = Path.home() / ".cache" / "volume-cli-bench"
        if args.set == "small":
            wheelhouse = small_wheelhouse(args.wheelhouse or cache_root / "netvol-small")
        else:
            wheelhouse = ensure_wheelhouse(args.wheelhouse or cache_root / "wheelhouse")
        where = args.work or Path(tempfile.mkdtemp(prefix="netvol-bench-"))
        try:
            with local_disk(where, args.disk) as work, IndexServer(wheelhouse) as index:

                @contextlib.contextmanager
                def volume_of_its_own(name: str) -> Iterator[Counter]:
                    # Beside the local disk's image, not inside it: a loop device on a loop device writes twice.
                    place = (where if args.disk == "fresh" else work) / name
                    place.mkdir()
                    try:
                        with (
                            local_disk(place, args.disk, size_gb=VOLUME_DISK_GB) as disk,
                            mounted(disk / "backing", disk / "mnt", **options) as volume,
                        ):
                            yield VolumeCounter(volume)
                    finally:
                        shutil.rmtree(place, ignore_errors=True)

                env = bench_env(work)
                bench = Bench(Unmounted(), work, wheels, index.url, uv, env, args.cache_seconds, args.touch_memory_gb)
                run_benchmark(bench, results, tools, args.runs, volume_of_its_own, after_each=save_so_far)
        finally:
            if args.work is None:  # a full run leaves ~4 GB of targets and caches: a temp folder is ours to remove
                shutil.rmtree(where, ignore_errors=True)
    for path in args.load:
        load_into(results, path)
    report(results, args, tools if args.runs > 0 else [])


if __name__ == "__main__":
    main()
