"""Benchmark the dependency engine against raw ``uv pip install --target`` and ``pip install --target``.

Run by hand, never in CI (it downloads ~100 MB from PyPI once)::

    /work/venv/bin/python bench/deps_bench.py [--wheelhouse DIR] [--work DIR] [--no-strace]

A wheelhouse of ~45 real wheels (numpy, scipy, pandas, scikit-learn, fastapi,
uvicorn, pydantic, transformers and their dependencies, for CPython 3.11) is
downloaded once with pip and served from 127.0.0.1 as a simple index. Each
tool installs into its own target on local disk; file operations on the
target are counted with ``strace -f -y`` (every file or descriptor syscall
whose path lies under the target), which is what costs round trips on a
network volume. Scenarios: full install, no-op, one leaf upgraded (tqdm),
one package removed (uvicorn). Then cold import of numpy+pandas+scipy from
the forest vs a plain --target folder.
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

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from wheelfactory import IndexServer  # noqa: E402

TOP_LEVEL = ["numpy", "scipy", "pandas", "scikit-learn", "fastapi", "uvicorn", "pydantic", "transformers", "tqdm"]
LEAF_OLD, LEAF_NEW = "tqdm==4.66.5", "tqdm==4.70.1"
REMOVED = "uvicorn"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

_VOLUME_CLI_INSTALL = """
import sys
from pathlib import Path
from volume_cli.deps import install
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.project.discovery import load_project_folder
root, folder, mirror, cache = sys.argv[1:5]
result = install(layout=VolumeLayout(Path(root)), project=load_project_folder(Path(folder)), mirror=mirror,
                 cache_dir=Path(cache), progress=NullProgress())
print("noop" if result.noop else f"installed {result.installed_count}")
"""


def ensure_wheelhouse(folder: Path) -> Path:
    if folder.is_dir() and len(list(folder.glob("*.whl"))) >= 40:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    base = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary",
        ":all:",
        "--python-version",
        PYTHON,
        "--implementation",
        "cp",
        "--platform",
        "manylinux_2_28_x86_64",
        "--platform",
        "manylinux_2_17_x86_64",
        "--platform",
        "manylinux2014_x86_64",
        "-d",
        str(folder),
    ]
    subprocess.run([*base, *[name for name in TOP_LEVEL if name != "tqdm"], LEAF_NEW], check=True)
    subprocess.run([*base, "--no-deps", LEAF_OLD], check=True)
    return folder


def _strace_available() -> bool:
    return shutil.which("strace") is not None


def run_measured(
    command: list[str], *, target: Path, strace: bool, env: dict[str, str] | None = None
) -> tuple[float, int | None]:
    """Wall time of ``command`` and, with strace, how many file syscalls touched ``target``."""
    environment = dict(os.environ, **(env or {}))
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    elapsed = time.monotonic() - started
    if not strace:
        return elapsed, None
    return elapsed, count_file_ops(command, target=target, env=environment)


def count_file_ops(command: list[str], *, target: Path, env: dict[str, str]) -> int:
    with tempfile.NamedTemporaryFile(suffix=".strace") as log:
        subprocess.run(
            ["strace", "-f", "-y", "-qq", "-e", "trace=%file,%desc", "-o", log.name, *command],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        needle = str(target)
        with open(log.name, encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if needle in line)


class Scenario:
    """One tool: how to bring a target to a list of requirements."""

    def __init__(self, name: str, target: Path, apply: Callable[[list[str], str], list[str] | None]) -> None:
        self.name = name
        self.target = target
        self.apply = apply


def make_project(folder: Path, requirements: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "project.yaml").write_text(yaml.safe_dump({"name": "bench", "python_version": PYTHON}))
    (folder / "dependencies.yaml").write_text(yaml.safe_dump({"groups": {"main": {"packages": requirements}}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheelhouse", type=Path, default=Path.home() / ".cache" / "volume-cli-bench" / "wheelhouse")
    parser.add_argument("--extra", type=Path, default=Path.home() / ".cache" / "volume-cli-bench" / "extra")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--no-strace", action="store_true")
    args = parser.parse_args()

    wheelhouse = ensure_wheelhouse(args.wheelhouse)
    strace = not args.no_strace and _strace_available()
    work = args.work or Path(tempfile.mkdtemp(prefix="deps-bench-"))
    served = work / "index"
    served.mkdir(parents=True, exist_ok=True)
    for wheel in [*wheelhouse.glob("*.whl"), *args.extra.glob("*.whl")]:
        if not (served / wheel.name).exists():
            os.link(wheel, served / wheel.name) if wheel.stat().st_dev == served.stat().st_dev else shutil.copy(
                wheel, served
            )
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    results: dict[str, dict[str, tuple[float, int | None] | None]] = {}

    with IndexServer(served) as index:
        # Warm uv's and pip's caches once, so every tool measures installing, not downloading.
        cache = work / "uv-cache"
        warm = work / "warm"
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "--target",
                str(warm),
                "--index-url",
                index.url,
                "--cache-dir",
                str(cache),
                *TOP_LEVEL,
                LEAF_OLD.split("==")[0],
            ],
            check=True,
            capture_output=True,
        )
        shutil.rmtree(warm)

        volume = work / "volume"
        volume.mkdir(exist_ok=True)
        project = work / "project"
        uv_target = work / "uv-target"
        pip_target = work / "pip-target"
        # pip.conf and PIP_FIND_LINKS of this machine must not add indexes to pip's runs
        uv_env = {
            "UV_CACHE_DIR": str(cache),
            "UV_PYTHON_DOWNLOADS": "never",
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_FIND_LINKS": "",
        }

        def requirements(leaf: str, removed: bool) -> list[str]:
            names = [name for name in TOP_LEVEL if name != "tqdm" and not (removed and name == REMOVED)]
            return [*names, leaf]

        def volume_cli(reqs: list[str], _: str) -> list[str]:
            make_project(project, reqs)
            return [sys.executable, "-c", _VOLUME_CLI_INSTALL, str(volume), str(project), index.url, str(cache)]

        def raw_uv(reqs: list[str], step: str) -> list[str]:
            if step == "remove":
                return [uv, "pip", "uninstall", "--python", sys.executable, "--target", str(uv_target), REMOVED]
            return [
                uv,
                "pip",
                "install",
                "--target",
                str(uv_target),
                "--index-url",
                index.url,
                "--link-mode",
                "copy",
                "--compile-bytecode",
                "--python",
                sys.executable,
                *reqs,
            ]

        def pip(reqs: list[str], step: str) -> list[str] | None:
            if step == "remove":
                return None  # pip cannot uninstall from a --target folder
            upgrade = ["--upgrade"] if step != "full" else []
            return [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(pip_target),
                "--index-url",
                index.url,
                "--no-input",
                *upgrade,
                *reqs,
            ]

        tools = [
            Scenario("volume-cli", volume, volume_cli),
            Scenario("uv --target", uv_target, raw_uv),
            Scenario("pip --target", pip_target, pip),
        ]
        steps = [
            ("full", LEAF_OLD, False),
            ("no-op", LEAF_OLD, False),
            ("one leaf upgraded", LEAF_NEW, False),
            ("one package removed", LEAF_NEW, True),
        ]
        for tool in tools:
            results[tool.name] = {}
            for step, leaf, removed in steps:
                reqs = requirements(leaf, removed)
                kind = {"full": "full", "no-op": "noop", "one leaf upgraded": "leaf"}.get(step, "remove")
                command = tool.apply(reqs, kind)
                if command is None:
                    results[tool.name][step] = None
                    continue
                if strace:
                    # Measure file ops on a copy of the before-state, so timing runs on the real one.
                    shadow = _shadow(tool.target)
                    ops = count_file_ops(
                        _retarget(command, tool.target, shadow), target=shadow, env=dict(os.environ, **uv_env)
                    )
                    shutil.rmtree(shadow, ignore_errors=True)
                else:
                    ops = None
                elapsed, _ = run_measured(command, target=tool.target, strace=False, env=uv_env)
                results[tool.name][step] = (elapsed, ops)
                print(f"  {tool.name:14} {step:22} {elapsed:7.2f}s  ops={ops}", file=sys.stderr)

        print_table(results, [step for step, _, _ in steps])
        bench_imports(volume, uv_target)


def _shadow(target: Path) -> Path:
    shadow = target.with_name(target.name + "-shadow")
    shutil.rmtree(shadow, ignore_errors=True)
    if target.exists():
        shutil.copytree(target, shadow, symlinks=True)
    else:
        shadow.mkdir()
    return shadow


def _retarget(command: list[str], target: Path, shadow: Path) -> list[str]:
    return [part.replace(str(target), str(shadow)) if str(target) in part else part for part in command]


def print_table(results: dict[str, dict[str, tuple[float, int | None] | None]], steps: list[str]) -> None:
    print()
    header = f"| {'tool':14} | " + " | ".join(f"{step:>24}" for step in steps) + " |"
    print(header)
    print("|" + "-" * 16 + "|" + "|".join("-" * 26 for _ in steps) + "|")
    for tool, row in results.items():
        cells = []
        for step in steps:
            value = row.get(step)
            if value is None:
                cells.append(f"{'n/a':>24}")
            else:
                seconds, ops = value
                cells.append(f"{seconds:>8.2f}s {('' if ops is None else f'{ops:,} ops'):>14}")
        print(f"| {tool:14} | " + " | ".join(cells) + " |")
    ours, uv = results.get("volume-cli", {}), results.get("uv --target", {})
    pip = results.get("pip --target", {})
    full, noop, leaf = ours.get("full"), ours.get("no-op"), ours.get("one leaf upgraded")
    if full and noop and leaf:
        print()
        print(f"no-op: {noop[0]:.2f}s (target <= 0.5s)")
        uv_full, pip_full = uv.get("full"), pip.get("full")
        if uv_full:
            print(f"full vs raw uv: {full[0] / uv_full[0]:.2f}x (target <= 1.3x)")
        if pip_full:
            print(f"pip vs volume-cli full: {pip_full[0] / full[0]:.1f}x faster (target >= 5x)")
        print(f"one leaf vs full: {leaf[0] / full[0]:.2f}x time (target <= 0.25x)", end="")
        if leaf[1] is not None and full[1]:
            print(f", {100 * leaf[1] / full[1]:.2f}% of file ops (target <= 2%)")
        else:
            print()


def bench_imports(volume: Path, plain: Path, runs: int = 5) -> None:
    forest = volume / "python-deps" / f"py{PYTHON}" / "bench"
    code = "import numpy, pandas, scipy.linalg, scipy.sparse, scipy.stats"
    print()
    print("| cold import of numpy+pandas+scipy | median | min |")
    print("|---|---|---|")
    for label, path in (("forest (volume-cli)", forest), ("plain --target (uv)", plain)):
        times = []
        for _ in range(runs):
            started = time.monotonic()
            subprocess.run(
                [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(path)!r}); {code}"], check=True
            )
            times.append(time.monotonic() - started)
        print(f"| {label} | {statistics.median(times):.3f}s | {min(times):.3f}s |")


if __name__ == "__main__":
    main()
