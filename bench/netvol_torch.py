"""A serverless worker's ``import torch`` on the simulated network volume, for a CUDA build of torch.

Run by hand as root, never in CI (it writes ~5 GB onto a simulated volume and as much on local disk)::

    .venv/bin/python bench/netvol_torch.py [--wheels DIR] [--rounds 2] [--ceiling-mb MB] [--keep-cache]
        [--skip-local] [--touch-memory-gb 4] [--save F]

The wheels come from ``--wheels`` (default /work/torchcuda/wheels: torch 2.14.1's CUDA build for
the running CPython and its nvidia-*, triton and cuda-* dependencies, downloaded once with
``pip download``), served as a PEP 503 index on 127.0.0.1 (tests/wheelfactory.py's IndexServer):
``dependencies.yaml`` groups take an index URL, not a folder, and volume-cli and uv are given
only that index, so nothing is fetched from the network.

What it measures, on one simulated volume (tests/netvol, as bench/netvol_bench.py: every
operation sleeps ``--latency-ms``, the kernel's caches hold ``--cache-seconds``; operations are
what reached the volume):

1. ``volume-cli deps install`` of a project whose only requirement is ``torch==2.14.1`` (uv's
   cache on local disk starts empty, so this includes unpacking every wheel; the download is
   from 127.0.0.1);
2. per round, the worker's local cache empty at the start of each: the first start through what
   ``volume-cli env`` prints (it copies the generation onto local disk when under the copy
   ceiling, ``VOLUME_CLI_LOCAL_COPY_MAX_MB``, set for the worker starts with ``--ceiling-mb``),
   a later start (the copy present), and the volume path (the same env with
   ``VOLUME_CLI_LOCAL_COPY=0``); then, unless ``--skip-local``, the same import from a
   ``uv pip install --target`` folder on local disk (installed once, before the rounds).

Each start runs ``import torch; print(torch.__file__)``: where torch came from is the "path"
column (local copy, volume or local disk), and the start's stderr is printed (volume-cli's
worker writes one line when it falls back to the volume path). Before each start the machine
settles, the kernel's attribute and entry caches expire (``--cache-seconds`` + 0.5 s), a child writes
``--touch-memory-gb`` of memory (bench/netvol_bench.py's ``settle()`` says why) and the
page cache is dropped (``echo 3 > /proc/sys/vm/drop_caches``), so the volume's file data and
the local copy's are read from their disks, not memory; but before "later start, page cache
kept", which follows the later start as a handler restarted on the same machine would. By default
the simulated volume drops a file's page cache at each open (libfuse's default), so a library mapped
from the volume is read anew by every process; ``--keep-cache`` keeps it, as mfsmount's default cache
mode does for an unchanged file. After each round's first start the
local copy is described: bytes on local disk (as du: allocated blocks), files, symlinks and
how many of those point onto the volume.

What it cannot show: there is no GPU here, so ``import torch`` loads torch's Python modules
and maps its native libraries but never initialises CUDA (no ``torch.cuda.init()``, no driver,
no kernels loaded); a worker's first CUDA call reads more of the CUDA libraries (cuBLAS, cuDNN,
...) later, from wherever its import took them. Dropping the page cache also drops the
simulated volume's backing disk's cache, which a real volume server would keep warm; and one
machine's two cores serve both the worker and the volume.

``--disk fresh`` (default) puts the local disk and the volume's backing on fresh journaled ext4s
(bench/freshdisk.py), ``--disk here`` on the disk of ``--work``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchtable import UV, VOLUME_CLI  # noqa: E402
from freshdisk import DISKS  # noqa: E402
from netvol_bench import (  # noqa: E402
    Bench,
    VolumeCounter,
    add_touch_memory_option,
    bench_env,
    commit,
    free_page_reporting,
    local_disk,
    machine_seconds,
    settle,
)
from wheelsets import WheelSet  # noqa: E402

from tests.netvol.mount import NetVol, mounted, unavailable_reason  # noqa: E402
from tests.wheelfactory import IndexServer  # noqa: E402
from volume_cli.local_copy import COPIES, COPY_ENV, MARKER, MAX_MB_ENV  # noqa: E402

REQUIREMENT = "torch==2.14.1"
WORKER_IMPORT = "import torch; print(torch.__file__)"  # the print: where torch came from, at no extra file access
DEFAULT_WHEELS = Path("/work/torchcuda/wheels")
VOLUME_DISK_GB = 48  # sparse: the generation (~5 GB) and its packs (as much again) land on it
FALLBACK = "volume-cli: importing from the volume"  # the worker's one line when it does not use a local copy
INSTALL, FIRST, LATER, VOLUME_PATH, LOCAL_DISK = "install", "first start", "later start", "volume path", "local disk"
WARM = "later start, page cache kept"  # a handler restarted on a machine that keeps what was read
CELLS = (INSTALL, FIRST, LATER, WARM, VOLUME_PATH, LOCAL_DISK)
# The torch generation in netvol_bench's terms: only its full install is used (one requirement, no leaf steps).
TORCH = WheelSet("torch 2.14.1, CUDA build", (), REQUIREMENT, REQUIREMENT, "", WORKER_IMPORT)


@dataclass
class Sample:
    """One measured command: its time, the operations the volume served, where torch came from, its stderr."""

    cell: str
    round: int  # 0: before the rounds (the install, the local disk's target)
    seconds: float
    operations: int
    path: str
    stderr: str


@dataclass
class CopyReport:
    """The worker's local copy after a round's first start (zeros: no copy was made)."""

    round: int
    bytes_on_disk: int
    files: int
    symlinks: int
    symlinks_onto_volume: int
    folders: list[str]


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    copies: list[CopyReport] = field(default_factory=list)
    machine: list[tuple[str, float, float, float]] = field(default_factory=list)  # what, wall, busy, steal
    generation: tuple[int, int] = (0, 0)  # bytes and files the install left on the volume's backing


def measured(volume: NetVol, command: list[str], env: dict[str, str]) -> tuple[float, int, str, str]:
    """Run ``command``: its time, the volume's operations, its stdout and stderr; exits on failure."""
    volume.reset()
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    operations = volume.reset().total
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return elapsed, operations, done.stdout, done.stderr


def drop_caches() -> None:
    """Written data to disk, then the page cache, dentries and inodes dropped: the next read goes to the disk."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def cold(bench: Bench, *, page_cache: bool = False) -> None:
    """A cold worker: a quiet machine, the kernel's attribute and entry caches expired, no page cache (unless kept)."""
    settle(bench, expire_caches=True)
    if not page_cache:
        drop_caches()


def where_from(stdout: str, places: dict[str, Path]) -> str:
    """Which copy of torch was imported (a key of ``places``), from the ``torch.__file__`` the start printed."""
    imported = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    for label, folder in places.items():
        if imported.startswith(f"{folder}{os.sep}"):
            return label
    return f"elsewhere: {imported or '?'}"


def start(bench: Bench, volume: NetVol, run: Run, cell: str, number: int, env: dict[str, str]) -> Sample:
    """One cold worker start: time, operations and path recorded; its stderr printed when it wrote any."""
    cold(bench, page_cache=cell == WARM)
    seconds, operations, stdout, stderr = measured(volume, [sys.executable, "-c", WORKER_IMPORT], env)
    places = {"local copy": bench.work / "worker-cache", "volume": volume.path, LOCAL_DISK: bench.work / "local-target"}
    path = where_from(stdout, places)
    sample = Sample(cell, number, seconds, operations, path, stderr.strip())
    run.samples.append(sample)
    print(f"round {number}: {cell}: {seconds:.2f} s, {operations:,} operations, from the {path}", file=sys.stderr)
    if sample.stderr:
        print(f"round {number}: {cell}: its stderr:\n{sample.stderr}", file=sys.stderr)
    return sample


def describe_copy(worker_cache: Path, volume: Path, number: int) -> CopyReport:
    """The complete local copies under the worker's cache (a folder with volume-cli's marker): size, files, links."""
    copies = [marker.parent for marker in sorted((worker_cache / COPIES).glob(f"*/*/{MARKER}"))]
    report = CopyReport(number, 0, 0, 0, 0, [str(copy) for copy in copies])
    seen: set[int] = set()
    for copy in copies:
        for folder, dirs, files in os.walk(copy):
            for name in [*files, *dirs]:
                path = os.path.join(folder, name)
                info = os.lstat(path)
                if info.st_ino not in seen:  # hard links counted once, as du does
                    seen.add(info.st_ino)
                    report.bytes_on_disk += info.st_blocks * 512
                if os.path.islink(path):
                    report.symlinks += 1
                    text = os.readlink(path)
                    pointed = os.path.normpath(os.path.join(folder, text))  # absolute text stays as it is
                    report.symlinks_onto_volume += pointed.startswith(f"{volume}{os.sep}")
                elif name in files:
                    report.files += 1
    return report


def tree_size(folder: Path) -> tuple[int, int]:
    """Allocated bytes and files under ``folder`` (hard links once)."""
    seen: set[int] = set()
    size = files = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            info = os.lstat(os.path.join(parent, name))
            files += 1
            if info.st_ino not in seen:
                seen.add(info.st_ino)
                size += info.st_blocks * 512
    return size, files


@contextlib.contextmanager
def machine(run: Run, what: str) -> Iterator[None]:
    """The machine's busy and stolen CPU-seconds over the block, recorded and said."""
    before, started = machine_seconds(), time.monotonic()
    yield
    wall = time.monotonic() - started
    busy, steal = (after - first for after, first in zip(machine_seconds(), before, strict=True))
    run.machine.append((what, wall, busy, steal))
    print(
        f"{what} done in {wall:.0f} s (the machine's CPU: {busy:.1f} s busy, {steal:.1f} s stolen by the hypervisor)",
        file=sys.stderr,
        flush=True,
    )


def install(bench: Bench, volume: NetVol, run: Run, index: IndexServer) -> Path:
    """``volume-cli deps install`` of torch onto the volume; checks that every wheel came from the local index."""
    target = volume.path / "volume"
    target.mkdir()
    command = bench.install_command(VOLUME_CLI, target, "full install")
    assert command is not None
    cold(bench)
    seconds, operations, _, stderr = measured(volume, command, bench.env)
    run.samples.append(Sample(INSTALL, 0, seconds, operations, "volume", stderr.strip()))
    served = [request for request in index.requests if request.startswith("/files/torch-")]
    if not served:
        raise SystemExit(f"the install did not fetch torch from the local index {index.url}: {index.requests[:20]}")
    settle(bench)  # volume-cli's detached removal of its staging folder
    run.generation = tree_size(volume.backing / "volume")
    print(f"install: {seconds:.2f} s, {operations:,} operations", file=sys.stderr)
    return target


def local_target(bench: Bench) -> Path:
    """torch from the same index into a ``uv pip install --target`` folder on local disk (not timed)."""
    target = bench.work / "local-target"
    command = bench.install_command(UV, target, "full install")
    assert command is not None
    subprocess.run(command, env=bench.env, check=True, capture_output=True)
    return target


def rounds(bench: Bench, volume: NetVol, run: Run, args: argparse.Namespace, index: IndexServer) -> None:
    with machine(run, "install"):
        target = install(bench, volume, run, index)
    local = None if args.skip_local else local_target(bench)
    worker_cache = bench.work / "worker-cache"  # Bench.worker_env's --local-cache
    ceiling = {} if args.ceiling_mb is None else {MAX_MB_ENV: f"{args.ceiling_mb:g}"}
    for number in range(1, args.rounds + 1):
        shutil.rmtree(worker_cache, ignore_errors=True)  # each round's first start finds no copy
        with machine(run, f"round {number}/{args.rounds}"):
            env = bench.worker_env(VOLUME_CLI, target) | ceiling
            start(bench, volume, run, FIRST, number, env)
            run.copies.append(describe_copy(worker_cache, volume.path, number))
            start(bench, volume, run, LATER, number, env)
            start(bench, volume, run, WARM, number, env)
            start(bench, volume, run, VOLUME_PATH, number, env | {COPY_ENV: "0"})
            if local is not None:
                start(bench, volume, run, LOCAL_DISK, number, bench.worker_env(UV, local))
    shutil.rmtree(worker_cache, ignore_errors=True)


def _gb(value: float) -> str:
    return f"{value / 1e9:.2f} GB"


def render(run: Run, args: argparse.Namespace) -> str:
    """Markdown: per cell, the path and each round's time and operations, then their medians; the copies below."""
    numbers = range(1, args.rounds + 1)
    head = ["cell", "path", *(f"round {n} {part}" for n in numbers for part in ("time", "operations"))]
    lines = ["| " + " | ".join([*head, "median time", "median operations"]) + " |", "|---" * (len(head) + 2) + "|"]
    for cell in CELLS:
        samples = [sample for sample in run.samples if sample.cell == cell]
        if not samples:
            continue
        by_round = {sample.round: sample for sample in samples}
        if cell == INSTALL:  # once, before the rounds: shown as round 1's
            by_round = {1: samples[0]}
        paths = " / ".join(dict.fromkeys(sample.path for sample in samples))
        if any(FALLBACK in sample.stderr for sample in samples):
            paths += " (fallback: see stderr below)"
        cells = [cell + (" (once)" if cell == INSTALL else ""), paths]
        for n in numbers:
            sample = by_round.get(n)
            cells += ["—", "—"] if sample is None else [f"{sample.seconds:.2f} s", f"{sample.operations:,}"]
        cells.append(f"{statistics.median(sample.seconds for sample in samples):.2f} s")
        cells.append(f"{statistics.median(sample.operations for sample in samples):,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    size, files = run.generation
    lines += ["", f"The install left {_gb(size)} in {files:,} files on the volume (its store, packs and records)."]
    lines += [
        "",
        "| round | local copy on disk (du) | files | symlinks | symlinks onto the volume |",
        "|---|---|---|---|---|",
    ]
    for copy in run.copies:
        if not copy.folders:
            lines.append(f"| {copy.round} | no copy | — | — | — |")
            continue
        row = [_gb(copy.bytes_on_disk), f"{copy.files:,}", f"{copy.symlinks:,}", f"{copy.symlinks_onto_volume:,}"]
        lines.append(f"| {copy.round} | " + " | ".join(row) + " |")
    lines.append("")
    for what, wall, busy, steal in run.machine:
        lines.append(f"- {what}: {wall:.0f} s, the machine's CPU {busy:.1f} s busy, {steal:.1f} s stolen")
    said: dict[str, list[str]] = {}  # each distinct stderr once, with the starts that wrote it
    for sample in run.samples:
        if sample.stderr and sample.cell != INSTALL:
            said.setdefault(sample.stderr, []).append(f"round {sample.round} {sample.cell}")
    if said:
        lines += ["", "stderr of the starts:"]
        for text, starts in said.items():
            lines.append(f"- {', '.join(starts)}:")
            lines += [f"      {line}" for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def summary(args: argparse.Namespace) -> str:
    load = os.getloadavg()
    ceiling = "default" if args.ceiling_mb is None else f"{args.ceiling_mb:g} MB"
    disk = "fresh journaled ext4s (bench/freshdisk.py)" if args.disk == "fresh" else "the disk of --work"
    return (
        f"Measured {datetime.date.today()} at commit {commit()}: {REQUIREMENT} (CUDA build, {args.wheel_count} wheels), "
        f"{args.rounds} round(s), {args.latency_ms:g} ms per operation, {args.cache_seconds:g} s kernel cache, "
        f"page cache {'kept' if args.keep_cache else 'dropped'} at each open, "
        f"page cache dropped before each start but the warm one, copy ceiling {ceiling}; local disk and the volume's backing on {disk}; "
        f"{args.touch_memory_gb:g} GB of memory touched before each step ({free_page_reporting()}); "
        f"{os.cpu_count()} cores, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the end."
    )


def save(run: Run, args: argparse.Namespace, path: Path) -> None:
    meta: dict[str, Any] = {
        "date": str(datetime.date.today()),
        "commit": commit(),
        "requirement": REQUIREMENT,
        "wheels": str(args.wheels),
        "rounds": args.rounds,
        "latency_ms": args.latency_ms,
        "cache_seconds": args.cache_seconds,
        "keep_cache": args.keep_cache,
        "ceiling_mb": args.ceiling_mb,
        "disk": args.disk,
        "touch_memory_gb": args.touch_memory_gb,
        "memory": free_page_reporting(),
        "loadavg": os.getloadavg(),
    }
    document = {
        "meta": meta,
        "samples": [asdict(sample) for sample in run.samples],
        "copies": [asdict(copy) for copy in run.copies],
        "machine": [dict(zip(("what", "wall", "busy", "steal"), row, strict=True)) for row in run.machine],
        "generation": {"bytes": run.generation[0], "files": run.generation[1]},
    }
    path.write_text(json.dumps(document, indent=1) + "\n")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, default=DEFAULT_WHEELS, help="folder of torch's wheels and its deps")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--cache-seconds", type=float, default=1.0)
    parser.add_argument("--ceiling-mb", type=float, default=None, help=f"{MAX_MB_ENV} for the worker starts")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder on local disk (default: a temp dir)")
    parser.add_argument("--disk", choices=DISKS, default="fresh", help="as bench/netvol_bench.py's --disk")
    parser.add_argument("--save", type=Path, default=None, help="write every sample as JSON")
    parser.add_argument("--skip-local", action="store_true", help="no local disk reference")
    add_touch_memory_option(parser)
    parser.add_argument(
        "--keep-cache", action="store_true", help="a file's page cache outlives its next open (mfsmount's default)"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    args.wheel_count = len(list(args.wheels.glob("*.whl")))
    if not any(args.wheels.glob("torch-2.14.1-*.whl")):
        parser.error(
            f"no torch 2.14.1 wheel in {args.wheels}: download it and its dependencies once with "
            f"`python -m pip download {REQUIREMENT} --only-binary=:all: -d {args.wheels}` (2.9 GB)"
        )
    return args


def main() -> None:
    args = parse_arguments()
    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(f"the simulated volume is unavailable: {reason}")
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    run = Run()
    where = args.work or Path(tempfile.mkdtemp(prefix="netvol-torch-"))
    try:
        with local_disk(where, args.disk) as work, IndexServer(args.wheels) as index:
            # Beside the local disk's image, not inside it: a loop device on a loop device writes twice.
            place = (where if args.disk == "fresh" else work) / "volume"
            place.mkdir()
            try:
                with (
                    local_disk(place, args.disk, size_gb=VOLUME_DISK_GB) as disk,
                    mounted(
                        disk / "backing",
                        disk / "mnt",
                        latency_ms=args.latency_ms,
                        cache_seconds=args.cache_seconds,
                        keep_cache=args.keep_cache,
                    ) as volume,
                ):
                    bench = Bench(
                        VolumeCounter(volume),
                        work,
                        TORCH,
                        index.url,
                        uv,
                        bench_env(work),
                        args.cache_seconds,
                        args.touch_memory_gb,
                    )
                    rounds(bench, volume, run, args, index)
            finally:
                shutil.rmtree(place, ignore_errors=True)
    finally:
        if args.work is None:  # ~15 GB of caches, copies and targets: a temp folder is ours to remove
            shutil.rmtree(where, ignore_errors=True)
        if args.save is not None:
            save(run, args, args.save)
    print(f"\n{render(run, args)}\n{summary(args)}")


if __name__ == "__main__":
    main()
