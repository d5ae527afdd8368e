"""The deps benchmark on the simulated network volume: volume-cli against raw uv, time and operations.

Run by hand as root, never in CI (it downloads real wheels from PyPI once)::

    .venv/bin/python bench/netvol_bench.py [--set small|full] [--runs 3] [--latency-ms 1] [--cache-seconds 1]

The volume is tests/netvol: a passthrough FUSE file system that sleeps ``--latency-ms`` in
every operation, with the kernel's attribute/entry cache at ``--cache-seconds`` (mfsmount's
default is 1 s). Operations are what the file system served (lookups count as getattr),
so they are only the calls that reached the volume, never pipe traffic or local files.
Each run installs into fresh targets on the volume, interleaving the tools; uv's cache is
warm and on local disk, as on a pod. Cells are medians over ``--runs``.

``--set small`` is numpy, requests, tqdm, pyyaml (a few minutes); ``--set full`` is the
44-wheel set of bench/deps_bench.py (several minutes per install at 1 ms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from deps_bench import _VOLUME_CLI_INSTALL, LEAF_OLD, TOP_LEVEL, ensure_wheelhouse, make_project  # noqa: E402

from tests.netvol.mount import NetVol, mounted, unavailable_reason  # noqa: E402
from tests.wheelfactory import IndexServer  # noqa: E402

SMALL = ["numpy", "requests", "tqdm", "pyyaml"]
TOOLS = ("volume-cli", "uv --target")
STEPS = ("full install", "no-op")
Sample = tuple[float, int]  # seconds, operations on the volume


def small_wheelhouse(folder: Path) -> Path:
    if len(list(folder.glob("*.whl"))) >= len(SMALL):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--only-binary", ":all:", "-d", str(folder), *SMALL]
    subprocess.run(command, check=True)
    return folder


def measured(volume: NetVol, command: list[str], env: dict[str, str]) -> Sample:
    volume.reset()
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{done.stderr[-2000:]}")
    return elapsed, volume.reset().total


def files_under(folder: Path) -> int:
    return sum(len(files) + len(dirs) for _, dirs, files in os.walk(folder))


def one_run(
    volume: NetVol, run: int, commands: dict[str, Callable[[Path], list[str]]], env: dict[str, str]
) -> dict[tuple[str, str], Sample]:
    """Both tools, full install then no-op, each into a fresh target on the volume (order alternates)."""
    samples: dict[tuple[str, str], Sample] = {}
    order = TOOLS if run % 2 == 0 else TOOLS[::-1]
    for tool in order:
        target = volume.path / f"run{run}-{tool.split()[0]}"
        for step in STEPS:
            samples[tool, step] = measured(volume, commands[tool](target), env)
        samples[tool, "files"] = (0.0, files_under(volume.backing / target.name))
    return samples


def print_table(runs: list[dict[tuple[str, str], Sample]], args: argparse.Namespace) -> None:
    def median(tool: str, step: str, part: int) -> float:
        return statistics.median(run[tool, step][part] for run in runs)

    print(f"\n{args.set} set, {args.latency_ms:g} ms per operation, {args.cache_seconds:g} s kernel cache, ", end="")
    print(f"median of {len(runs)} interleaved runs\n")
    print("| | volume-cli | raw `uv pip install --target --compile-bytecode` | volume-cli / uv |")
    print("|---|---|---|---|")
    for step in STEPS:
        for label, part, unit in (("time", 0, "s"), ("operations", 1, "")):
            ours, theirs = median(TOOLS[0], step, part), median(TOOLS[1], step, part)
            ratio = f"{ours / theirs:.2f}×" if theirs else "—"
            cell = (lambda value: f"{value:.2f} s") if unit else (lambda value: f"{value:,.0f}")
            print(f"| {step}, {label} | {cell(ours)} | {cell(theirs)} | {ratio} |")
    for tool in TOOLS:
        entries = median(tool, "files", 1)
        print(f"\n{tool}: {entries:,.0f} files and folders on the volume, ", end="")
        print(f"{median(tool, STEPS[0], 1) / max(entries, 1):.1f} operations per entry in a full install", end="")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("small", "full"), default="small")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--cache-seconds", type=float, default=1.0)
    parser.add_argument("--wheelhouse", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder on local disk (default: a temp dir)")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(f"the simulated volume is unavailable: {reason}")
    cache_root = Path.home() / ".cache" / "volume-cli-bench"
    if args.set == "small":
        wheelhouse, requirements = small_wheelhouse(args.wheelhouse or cache_root / "netvol-small"), SMALL
    else:
        wheelhouse = ensure_wheelhouse(args.wheelhouse or cache_root / "wheelhouse")
        requirements = [*TOP_LEVEL[:-1], LEAF_OLD]
    work = args.work or Path(tempfile.mkdtemp(prefix="netvol-bench-"))
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    cache = work / "uv-cache"
    env = dict(os.environ, UV_CACHE_DIR=str(cache), UV_PYTHON_DOWNLOADS="never", PYTHONPATH=str(REPO))
    with IndexServer(wheelhouse) as index:
        warm = [uv, "pip", "install", "-q", "--target", str(work / "warm"), "--index-url", index.url, *requirements]
        subprocess.run(warm, env=env, check=True)  # every run measures installing, not downloading
        project = work / "project"
        make_project(project, requirements)
        commands: dict[str, Callable[[Path], list[str]]] = {
            TOOLS[0]: lambda target: [
                *(sys.executable, "-c", _VOLUME_CLI_INSTALL, str(target), str(project), index.url, str(cache))
            ],
            TOOLS[1]: lambda target: [
                *(uv, "pip", "install", "-q", "--target", str(target), "--compile-bytecode"),
                *("--python", sys.executable, "--index-url", index.url, *requirements),
            ],
        }
        options = {"latency_ms": args.latency_ms, "cache_seconds": args.cache_seconds}
        with mounted(work / "backing", work / "mnt", **options) as volume:
            runs = []
            for run in range(args.runs):
                for tool in TOOLS:
                    (volume.path / f"run{run}-{tool.split()[0]}").mkdir()
                runs.append(one_run(volume, run, commands, env))
                print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    print_table(runs, args)


if __name__ == "__main__":
    main()
