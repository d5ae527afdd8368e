"""Start-up timings of everyday commands, each a fresh process (run by hand; CI never asserts timings).

    python bench/startup_bench.py [--runs 10] [--code DIR ...]

Measures `volume-cli --help`, `projects list`, `status --json` on a temporary volume with
20 recorded projects, a no-op `deps install` (a one-wheel project installed from a local
index, so uv is called and finds nothing to do) and a `gc -y` that finds nothing to remove.
Each command is run as ``python -m volume_cli`` with the code of each ``--code`` folder
first on PYTHONPATH (default: this checkout), so two versions of the code (e.g. a
``git archive`` of an older commit) compare on the same machine: versions are interleaved
in every round and the table shows the median wall time and the median CPU time (user +
system, less sensitive to other load) of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.wheelfactory import IndexServer, build_wheel  # noqa: E402
from volume_cli.layout import VolumeLayout  # noqa: E402
from volume_cli.store.state import DepsRecord, ProjectState, write_project_state  # noqa: E402

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def make_volume(base: Path, count: int) -> tuple[Path, Path]:
    root, projects = base / "volume", base / "projects"
    root.mkdir()
    layout = VolumeLayout(root)
    for index in range(count):
        name = f"project-{index:02d}"
        folder = projects / name.replace("-", "_")
        folder.mkdir(parents=True)
        (folder / "project.yaml").write_text(f'name: {name}\npython_version: "3.10"\n')
        (folder / "dependencies.yaml").write_text(
            "groups:\n  main:\n    packages: [numpy==1.26.4, pandas==2.2.2, scipy==1.13.1]\n"
        )
        write_project_state(
            layout,
            ProjectState(
                project=name,
                python_version="3.10",
                deps=DepsRecord(
                    generation="g0001",
                    generation_path=f"python-deps/py3.10/.generations/{name}/g0001",
                    config_hash="sha256:x",
                    installed_at=datetime.now(timezone.utc),
                    package_count=40,
                    size_bytes=2_000_000_000,
                    tool_version="bench",
                ),
            ),
        )
    return root, projects


def make_installed(base: Path, index_url: str, env: dict[str, str]) -> tuple[Path, Path]:
    """A volume with one project installed (one small wheel), for the no-op install and gc."""
    root, projects = base / "installed", base / "installed-projects"
    root.mkdir()
    (projects / "startup").mkdir(parents=True)
    (projects / "startup" / "project.yaml").write_text(f'name: startup\npython_version: "{PYTHON}"\n')
    (projects / "startup" / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [startuppkg]\n")
    command = [sys.executable, "-m", "volume_cli", "deps", "install", "-p", "startup", "--root", str(root)]
    command += ["--projects-dir", str(projects), "--index-url", index_url, "-q"]
    subprocess.run(command, check=True, capture_output=True, env=env)
    return root, projects


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv``."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read() if process.stderr else b""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:6])} failed: {stderr.decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--code", type=Path, action="append", default=[], help="a checkout to measure (repeatable)")
    args = parser.parse_args()
    codes = args.code or [REPO]
    with tempfile.TemporaryDirectory() as temp:
        base = Path(temp)
        build_wheel(base / "wheels", "startuppkg", "1.0")
        env = dict(os.environ, UV_CACHE_DIR=str(base / "uv"), VOLUME_CLI_UV_CACHE=str(base / "uv"))
        env |= {"UV_PYTHON_DOWNLOADS": "never", "VOLUME_CLI_LOCAL_CACHE": str(base / "local")}
        with IndexServer(base / "wheels") as index:
            root, projects = make_volume(base, args.projects)
            installed, installed_projects = make_installed(base, index.url, env | {"PYTHONPATH": str(codes[0])})
            listed = ["--projects-dir", str(projects)]
            one = ["--root", str(installed), "--projects-dir", str(installed_projects)]
            cases = [
                ("volume-cli --help", ["--help"]),
                ("projects list", ["projects", "list", *listed]),
                (f"status --json ({args.projects} projects)", ["status", "--json", "--root", str(root), *listed]),
                ("deps install, no-op", ["deps", "install", "-p", "startup", *one, "--index-url", index.url, "-q"]),
                ("gc -y, nothing to remove", ["gc", "-y", "--root", str(installed), "-q"]),
            ]
            samples: dict[tuple[str, Path], list[tuple[float, float]]] = {}
            for run in range(args.runs):
                for label, words in cases:
                    order = codes if run % 2 == 0 else codes[::-1]
                    for code in order:
                        sample = measure([sys.executable, "-m", "volume_cli", *words], env | {"PYTHONPATH": str(code)})
                        samples.setdefault((label, code), []).append(sample)
    print(f"{'command':<34} {'code':<24} {'median wall s':>13} {'median CPU s':>12}")
    for label, _ in cases:
        for code in codes:
            walls, cpus = zip(*samples[(label, code)], strict=True)
            print(
                f"{label:<34} {str(code)[-24:]:<24} {statistics.median(walls):>13.3f} {statistics.median(cpus):>12.3f}"
            )
    load = os.getloadavg()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.runs} runs, load {load[0]:.1f}/{load[1]:.1f}"
    )


if __name__ == "__main__":
    main()
