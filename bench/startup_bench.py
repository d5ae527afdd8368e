"""Start-up and status timings (run by hand; prints a table; CI never asserts timings).

    python bench/startup_bench.py [--runs 10]

Measures `volume-cli --help`, `projects list`, and `status --json` on a
temporary volume with 20 installed projects, each as a fresh process.
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
from datetime import datetime, timezone
from pathlib import Path

from volume_cli.layout import VolumeLayout
from volume_cli.store.state import DepsRecord, ProjectState, write_project_state


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


def time_command(argv: list[str], runs: int) -> tuple[float, float]:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), min(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--projects", type=int, default=20)
    args = parser.parse_args()
    script = shutil.which("volume-cli", path=str(Path(sys.executable).parent)) or "volume-cli"
    with tempfile.TemporaryDirectory() as temp:
        root, projects = make_volume(Path(temp), args.projects)
        env_dirs = ["--projects-dir", str(projects)]
        cases = [
            ("volume-cli --help", [script, "--help"]),
            ("projects list", [script, "projects", "list", *env_dirs]),
            (f"status --json ({args.projects} projects)", [script, "status", "--json", "--root", str(root), *env_dirs]),
        ]
        print(f"{'command':<34} {'median s':>9} {'min s':>7}")
        for label, argv in cases:
            median, best = time_command(argv, args.runs)
            print(f"{label:<34} {median:>9.3f} {best:>7.3f}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
