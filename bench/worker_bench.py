"""A worker's cold import on the simulated network volume: each way of reaching the packages.

Run by hand as root, never in CI (it downloads real wheels from PyPI once)::

    .venv/bin/python bench/worker_bench.py [--set small|full] [--runs 3] [--latency-ms 1] [--cache-seconds 1] [--touch-memory-gb 4] [--work DIR] [--with-tar] [--skip NAME ...]

``--work DIR`` keeps the installs there and reuses them on the next run.

The same packages are installed once (on local disk, under the mount's backing folder)
by volume-cli and by ``uv pip install --target --compile-bytecode``; then fresh Python
processes import them, configured as a worker is:

* ``forest``: what ``volume-cli env`` prints, local copy off (VOLUME_CLI_LOCAL_COPY=0):
  the generation's symlink forest into ``.store`` on the volume;
* ``plain --target``: PYTHONPATH is a plain uv --target folder on the volume;
* ``local disk``: the same plain folder on local disk;
* ``file copy, first start (before)``: what ``env`` prints, the local copy made file by file
  (VOLUME_CLI_LOCAL_COPY_PACKS=0: what the first start did before packs, and still does for
  entries without one);
* ``copy, first start`` / ``copy, later start``: what ``env`` prints, with the default
  local copy (the first start unpacks the entries' packs onto local disk, later ones find it);
* ``activate(), first`` / ``activate(), later``: the runtime copy's ``activate()``, same;
* ``first start, half the packs`` / ``first start, no pack``: ``copy, first start`` with every
  other entry's pack (or every pack) moved aside first (behind the mount's back: not counted),
  as for entries pushed by ``sync push`` and applied by a worker: those entries are copied file
  by file, the others unpacked;
* ``one tar, tarfile`` (``--with-tar``): one tar of the generation on the volume, read as
  one file and extracted by ``tarfile`` onto local disk, then imported (measured, not shipped).

Between starts the benchmark sleeps past the kernel cache, so every start is cold for the
volume, and then a child writes ``--touch-memory-gb`` of memory, so that no start pays for pages
this VM handed back to its host (bench/netvol_bench.py's ``settle()`` says why); cells are
medians over ``--runs`` interleaved runs; operations are what reached the volume.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from netvol_bench import add_touch_memory_option, free_page_reporting, touch_memory  # noqa: E402
from wheelsets import FULL, SMALL, ensure_wheelhouse, make_project, small_wheelhouse  # noqa: E402

from tests.netvol.mount import NetVol, mounted, unavailable_reason  # noqa: E402
from tests.wheelfactory import IndexServer  # noqa: E402

IMPORTS = {"small": "import numpy, requests, tqdm, yaml", "full": "import numpy, pandas, sklearn, transformers"}
ACTIVATE = "import runpy; runpy.run_path({runtime!r})['activate']('bench', {root!r}, require_models=False); "
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
Sample = tuple[float, int]


def install_all(work: Path, backing: Path, wheelhouse: Path, requirements: list[str]) -> None:
    """volume-cli's generation and a plain --target folder under the backing folder, one more on local disk."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    env = dict(os.environ, UV_CACHE_DIR=str(work / "uv-cache"), UV_PYTHON_DOWNLOADS="never", PYTHONPATH=str(REPO))
    env |= {"VOLUME_CLI_UV_CACHE": str(work / "uv-cache"), "VOLUME_CLI_LOCAL_CACHE": str(work / "install-cache")}
    with IndexServer(wheelhouse) as index:
        for target in (backing / "plain", work / "local-plain"):
            if target.exists():  # --work reused: installed by an earlier run
                continue
            command = [uv, "pip", "install", "-q", "--target", str(target), "--compile-bytecode"]
            subprocess.run(
                [*command, "--python", sys.executable, "--index-url", index.url, *requirements], env=env, check=True
            )
        make_project(work / "projects" / "bench", requirements)
        (backing / "volume").mkdir(parents=True, exist_ok=True)
        common = ["--root", str(backing / "volume"), "--projects-dir", str(work / "projects"), "-q"]
        command = [sys.executable, "-m", "volume_cli", "deps", "install", "-p", "bench", *common]
        subprocess.run([*command, "--index-url", index.url], env=env, check=True)
    code = "from pathlib import Path; from volume_cli.consumer_env import write_runtime_copy; from volume_cli.layout import VolumeLayout; "
    code += f"write_runtime_copy(VolumeLayout(Path({str(backing / 'volume')!r})))"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    # Installed on local disk (fast), the entries were renamed into the store and no packs were written:
    # write them as publishing onto a network volume does (volume_cli/deps/publish.py).
    store = backing / "volume" / "python-deps" / ".store"
    code = "import sys; from pathlib import Path; from volume_cli.deps.publish import write_packs; "
    code += "store = Path(sys.argv[1]); write_packs({p.name: p for p in store.iterdir()}, store.parent / '.packs')"
    if not (store.parent / ".packs").exists():
        subprocess.run([sys.executable, "-c", code, str(store)], env=env, check=True)
    link = backing / "volume" / "python-deps" / f"py{PYTHON}" / "bench"
    if not (backing / "generation.tar").exists():  # the one-tar candidate (--with-tar)
        with tarfile.open(backing / "generation.tar", "w", dereference=True) as archive:
            archive.add(os.path.realpath(link), arcname=".", recursive=True, filter=None)


def worker_env(volume: NetVol, cache: Path, *, copy: bool, packs: bool = True) -> dict[str, str]:
    from volume_cli.consumer_env import consumer_env
    from volume_cli.layout import VolumeLayout

    layout = VolumeLayout(volume.path / "volume")
    variables = consumer_env(layout=layout, project="bench", python_version=PYTHON, mount=None).variables
    return (
        {"PATH": os.environ["PATH"], **variables, "VOLUME_CLI_LOCAL_CACHE": str(cache)}
        | ({} if copy else {"VOLUME_CLI_LOCAL_COPY": "0"})
        | ({} if packs else {"VOLUME_CLI_LOCAL_COPY_PACKS": "0"})
    )


def timed(volume: NetVol, command: list[str], env: dict[str, str], settle: Callable[[], None]) -> Sample:
    settle()
    volume.reset()
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd="/")
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{command} failed:\n{done.stderr[-3000:]}")
    return elapsed, volume.reset().total


def cases(
    volume: NetVol, work: Path, code: str, *, with_tar: bool, skip: list[str]
) -> dict[str, Callable[[Callable[[], None]], Sample]]:
    plain = {"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1"}
    runtime = str(volume.path / "volume" / ".metadata" / "runtime" / "volume_cli_runtime.py")
    activate = ACTIVATE.format(runtime=runtime, root=str(volume.path / "volume")) + code
    made: dict[str, Path] = {}

    def fresh(name: str) -> Path:
        """A new folder for a first start: removing the last one right before a timed start would charge
        that start for the file system's work of deleting ~550 MB (measured: 8 s to 20 s to unpack)."""
        made[name] = work / "old" / f"{name}-{uuid.uuid4().hex[:8]}"
        return made[name]

    def last(name: str) -> Path:
        return made[name]

    def unpack(settle: Callable[[], None]) -> Sample:
        target = fresh("unpacked")
        script = f"import tarfile, sys; tarfile.open({str(volume.path / 'generation.tar')!r}).extractall({str(target)!r}, filter='tar'); sys.path.insert(0, {str(target)!r}); {code}"
        return timed(volume, [sys.executable, "-c", script], plain, settle)

    def without_packs(every: int, settle: Callable[[], None]) -> Sample:
        packs = volume.backing / "volume" / "python-deps" / ".packs"
        aside = work / "packs-aside"
        aside.mkdir(exist_ok=True)
        moved = sorted(os.listdir(packs))[::every]
        for name in moved:
            os.rename(packs / name, aside / name)
        try:
            env = worker_env(volume, fresh(f"packs-{every}"), copy=True)
            return timed(volume, [sys.executable, "-c", code], env, settle)
        finally:
            for name in moved:
                os.rename(aside / name, packs / name)

    py = sys.executable
    table: dict[str, Callable[[Callable[[], None]], Sample]] = {
        "forest (no copy)": lambda s: timed(
            volume, [py, "-c", code], worker_env(volume, work / "unused", copy=False), s
        ),
        "plain --target": lambda s: timed(
            volume, [py, "-c", code], {**plain, "PYTHONPATH": str(volume.path / "plain")}, s
        ),
        "local disk": lambda s: timed(volume, [py, "-c", code], {**plain, "PYTHONPATH": str(work / "local-plain")}, s),
        "file copy, first start (before)": lambda s: timed(
            volume, [py, "-c", code], worker_env(volume, fresh("files"), copy=True, packs=False), s
        ),
        "copy, first start": lambda s: timed(volume, [py, "-c", code], worker_env(volume, fresh("env"), copy=True), s),
        "copy, later start": lambda s: timed(volume, [py, "-c", code], worker_env(volume, last("env"), copy=True), s),
        "first start, half the packs": lambda s: without_packs(2, s),
        "first start, no pack": lambda s: without_packs(1, s),
        "activate(), first": lambda s: timed(
            volume, [py, "-c", activate], {**plain, "VOLUME_CLI_LOCAL_CACHE": str(fresh("activate"))}, s
        ),
        "activate(), later": lambda s: timed(
            volume, [py, "-c", activate], {**plain, "VOLUME_CLI_LOCAL_CACHE": str(last("activate"))}, s
        ),
    }
    if with_tar:
        table["one tar, tarfile"] = unpack
    return {name: run for name, run in table.items() if not skip or not any(part in name for part in skip)}


def quiet(args: argparse.Namespace) -> None:
    """Before a start: past the kernel cache (a cold start for the volume), then backed memory."""
    time.sleep(args.cache_seconds + 0.5)
    touch_memory(args.touch_memory_gb)


def print_table(runs: list[dict[str, Sample]], args: argparse.Namespace) -> None:
    """Medians; the ratios are medians of each run's own ratio (the run's starts ran close together)."""
    names = list(runs[0])

    def median(name: str, part: int) -> float:
        return statistics.median(run[name][part] for run in runs)

    def ratio(name: str, base: str) -> str:
        return f"{statistics.median(run[name][0] / run[base][0] for run in runs):.2f}×"

    print(f"\n{args.set} set (`{IMPORTS[args.set]}`), {args.latency_ms:g} ms per operation, ", end="")
    print(
        f"{args.cache_seconds:g} s kernel cache, {args.touch_memory_gb:g} GB of memory touched before each start ",
        end="",
    )
    print(f"({free_page_reporting()}), median of {len(runs)} runs\n")
    print("| worker start | time (min–max) | operations on the volume | / plain --target | / local disk |")
    print("|---|---|---|---|---|")
    for name in names:
        times = [run[name][0] for run in runs]
        spread = f"{median(name, 0):.2f} s ({min(times):.1f}–{max(times):.1f})"
        print(
            f"| {name} | {spread} | {median(name, 1):,.0f} | {ratio(name, 'plain --target')} | {ratio(name, 'local disk')} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("small", "full"), default="small")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--cache-seconds", type=float, default=1.0)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder on local disk (default: a temp dir)")
    parser.add_argument("--with-tar", action="store_true", help="also the one-tar candidate (tarfile)")
    parser.add_argument("--skip", nargs="*", default=[], help="leave out the cases whose name contains one of these")
    add_touch_memory_option(parser)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(f"the simulated volume is unavailable: {reason}")
    cache_root = Path.home() / ".cache" / "volume-cli-bench"
    if args.set == "small":
        wheelhouse, requirements = small_wheelhouse(cache_root / "netvol-small"), SMALL.requirements("full install")
    else:
        wheelhouse, requirements = ensure_wheelhouse(cache_root / "wheelhouse"), FULL.requirements("full install")
    work = args.work or Path(tempfile.mkdtemp(prefix="worker-bench-"))
    install_all(work, work / "backing", wheelhouse, requirements)
    options = {"latency_ms": args.latency_ms, "cache_seconds": args.cache_seconds}
    with mounted(work / "backing", work / "mnt", **options) as volume:
        table = cases(volume, work, IMPORTS[args.set], with_tar=args.with_tar, skip=args.skip)
        runs = []
        for run in range(args.runs):
            # A later start right after its first start; the order of the groups alternates.
            paired = ("copy,", "activate(),")
            groups = [[name] for name in table if not name.startswith(paired)]
            groups += [[name for name in table if name.startswith(prefix)] for prefix in paired]
            samples = {}
            for group in groups if run % 2 == 0 else groups[::-1]:
                samples |= {name: table[name](lambda: quiet(args)) for name in group}
            runs.append({name: samples[name] for name in table})
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    print_table(runs, args)
    print(f"\nload average at the end: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    shutil.rmtree(work / "old", ignore_errors=True)  # the copies of every first start
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
