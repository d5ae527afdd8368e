"""Run install, rollback or gc in a subprocess that can be paused or killed at a named point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from volume_cli.deps.faults import CRASH_ENV, PAUSE_ENV
from volume_cli.layout import VolumeLayout

from .helpers import REPO

_DRIVER = """
import json, sys
from pathlib import Path
from volume_cli.deps import gc, install, rollback
from volume_cli.errors import VolumeCliError
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.project.discovery import load_project_folder
op, root, folder, mirror, cache = sys.argv[1:6]
layout = VolumeLayout(Path(root))
try:
    if op == "install":
        result = install(layout=layout, project=load_project_folder(Path(folder)), mirror=mirror,
                         cache_dir=Path(cache), progress=NullProgress(), wait_seconds=120)
        print(json.dumps({"generation": result.generation, "noop": result.noop}))
    elif op == "rollback":
        back = rollback(layout=layout, project=load_project_folder(Path(folder)), progress=NullProgress(),
                        wait_seconds=120)
        print(json.dumps({"generation": back.to_generation}))
    else:
        report = gc(layout=layout, grace_seconds=float(folder), dry_run=False, progress=NullProgress(),
                    wait_seconds=120)
        print(json.dumps({"entries_removed": list(report.entries_removed)}))
except VolumeCliError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    sys.exit(1)
"""


def start(
    op: str,
    layout: VolumeLayout,
    folder: Path | str,
    *,
    mirror: str = "",
    cache: Path | str = "",
    crash_at: str | None = None,
    pause_at: tuple[str, Path] | None = None,
) -> subprocess.Popen[str]:
    """``op``: install, rollback or gc (for gc, ``folder`` is the grace period in seconds)."""
    env = dict(os.environ)
    if crash_at:
        env[CRASH_ENV] = crash_at
    if pause_at:
        env[PAUSE_ENV] = f"{pause_at[0]}={pause_at[1]}"
    return subprocess.Popen(
        [sys.executable, "-c", _DRIVER, op, str(layout.root), str(folder), mirror, str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,  # kill_group takes uv with it, as an evicted pod would
    )


def kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate(timeout=60)


def wait_reached(process: subprocess.Popen[str], point: str, folder: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (folder / f"{point}.reached").exists():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"exited before {point}: {out}{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached {point}")
        time.sleep(0.02)


def release(point: str, folder: Path) -> None:
    (folder / f"{point}.go").touch()


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, err + out  # stdout last: its last line is the JSON result
