"""Benchmark the dependency engine against raw uv and pip on local disk: time and file-system calls.

Run by hand, never in CI (it downloads ~100 MB from PyPI once)::

    .venv/bin/python bench/deps_bench.py [--runs 3] [--strace-runs 1] [--tools ...] [--volume-dir DIR] [--save F]

The 44 wheels of bench/wheelsets.py are served from 127.0.0.1. Each tool (volume-cli, raw
``uv pip install --target --compile-bytecode``, ``pip install --target``) writes its target
under ``--volume-dir`` (default: a folder on local disk, standing in for the volume) and
keeps its temp and cache where a pod keeps them, outside that folder (uv's cache, warm, and
pip's cache on local disk; every tool's TMPDIR on another file system, /dev/shm by default,
so pip's move from its temp folder into the target is a copy of every file, as on a pod,
not one rename per folder). Steps: full install, no-op, one leaf upgraded, one
package removed (pip cannot uninstall from --target: n/a), a cold import (volume-cli through
what ``volume-cli env`` prints, uv and pip from their plain folder), and volume-cli's
``deps check --no-imports`` and ``gc``.

``--runs`` timed runs, then ``--strace-runs`` runs under ``strace -f -y`` that count the
file-system calls on ``--volume-dir`` only (bench/stracecount.py: path operands and
descriptors resolved there; never pipe traffic, sockets, or calls in local temp folders);
tools interleaved, order rotating. Cells: median time (min–max), median calls.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchtable import LOCAL_GOALS, PIP, UV, VOLUME_CLI, Results, load_into, render_goals, render_table, save  # noqa: E402
from netvol_bench import Bench, bench_env, checked, commit, run_tool, warm_caches  # noqa: E402
from stracecount import TRACE, count_calls  # noqa: E402
from wheelsets import FULL, SMALL, ensure_wheelhouse, small_wheelhouse  # noqa: E402

from tests.wheelfactory import IndexServer  # noqa: E402

TOOLS = (VOLUME_CLI, UV, PIP)


@dataclass(frozen=True)
class StraceCounter:
    """Times a command, or (``straced``) counts its file-system calls on ``path`` with strace."""

    path: Path
    straced: bool
    logs: Path  # local disk

    @property
    def backing(self) -> Path:
        return self.path

    def run(self, command: list[str], env: dict[str, str]) -> tuple[float | None, int | None]:
        if not self.straced:
            return checked(command, env), None
        with tempfile.NamedTemporaryFile(suffix=".strace", dir=self.logs) as log:
            checked(command, env, prefix=["strace", "-f", "-y", "-qq", "-e", TRACE, "-o", log.name])
            with open(log.name, encoding="utf-8", errors="replace") as handle:
                counts = count_calls(handle, str(self.path))
        top = ", ".join(f"{name} {count:,}" for name, count in counts.most_common(6))
        print(
            f"    {command[0].rsplit('/', 1)[-1]} {' '.join(command[1:4])}: {counts.total():,} calls ({top})",
            file=sys.stderr,
        )
        return None, counts.total()


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("small", "full"), default="full")
    parser.add_argument("--wheelhouse", type=Path, default=None, help="default: ~/.cache/volume-cli-bench/...")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder on local disk (default: a temp dir)")
    parser.add_argument("--volume-dir", type=Path, default=None, help="where the targets go (default: WORK/volume)")
    parser.add_argument(
        "--tmp",
        type=Path,
        default=Path("/dev/shm") / f"deps-bench-{os.getpid()}",
        help="TMPDIR of every tool, on another file system than --volume-dir (default: under /dev/shm)",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs")
    parser.add_argument("--strace-runs", type=int, default=1, help="runs under strace that count calls (0: none)")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS), metavar="TOOL")
    parser.add_argument("--save", type=Path, default=None, help="write every sample as JSON")
    parser.add_argument("--load", type=Path, action="append", default=[], help="add the tools saved by --save")
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    cache = Path.home() / ".cache" / "volume-cli-bench"
    if args.set == "small":
        wheels, wheelhouse = SMALL, small_wheelhouse(args.wheelhouse or cache / "netvol-small")
    else:
        wheels, wheelhouse = FULL, ensure_wheelhouse(args.wheelhouse or cache / "wheelhouse")
    strace_runs = args.strace_runs if shutil.which("strace") else 0
    work = (args.work or Path(tempfile.mkdtemp(prefix="deps-bench-"))).resolve()
    volume = (args.volume_dir or work / "volume").resolve()  # strace -y shows resolved paths
    volume.mkdir(parents=True, exist_ok=True)
    args.tmp.mkdir(parents=True, exist_ok=True)
    if args.tmp.stat().st_dev == volume.stat().st_dev:
        # pip unpacks into TMPDIR and moves into the target: one rename here, a copy of every file on a pod.
        print(f"warning: {args.tmp} and {volume} share a file system: pip's move is a rename", file=sys.stderr)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    tools = [tool for tool in TOOLS if tool in args.tools]
    results = Results(f"{wheels.name}, local disk")
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"

    def save_so_far() -> None:
        if args.save is not None:
            meta = {"date": str(datetime.date.today()), "commit": commit(), "set": args.set, "disk": "local"}
            save(results, args.save, meta=meta | {"loadavg": os.getloadavg()})

    with IndexServer(wheelhouse) as index:
        for run in range(strace_runs + args.runs):  # calls first: they do not depend on the machine's load
            counter = StraceCounter(volume, straced=run < strace_runs, logs=work / "logs")
            bench = Bench(counter, work, wheels, index.url, uv, bench_env(work, args.tmp), cache_seconds=0.0)
            if run == 0:
                warm_caches(bench)
            shift = run % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                run_tool(bench, results, tool, run)
                print(f"run {run + 1}/{args.runs + strace_runs}: {tool} done", file=sys.stderr, flush=True)
                save_so_far()
            for target in volume.glob(f"run{run}-*"):
                shutil.rmtree(target)
    shutil.rmtree(args.tmp, ignore_errors=True)
    for path in args.load:
        load_into(results, path)
    columns = list(dict.fromkeys([*tools, *results.samples]))
    load = os.getloadavg()
    print(f"\n{render_table(results, columns)}")
    print(f"Measured {datetime.date.today()} at commit {commit()}: time is the median of {args.runs} interleaved runs ")
    print(f"(min–max in brackets), calls the median of {strace_runs} straced runs; {os.cpu_count()} cores, ")
    print(f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the end.\n")
    print(render_goals(results, LOCAL_GOALS))


if __name__ == "__main__":
    main()
