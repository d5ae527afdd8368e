"""Helpers for dependency engine tests: importing through a forest, running installs in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import PY as PY  # re-exported: the deps tests import it from here
from volume_cli.deps.documents import EntryInfo, TopItem
from volume_cli.layout import VolumeLayout

REPO = Path(__file__).resolve().parents[2]


_DRIVER = """
import json, sys
from pathlib import Path
from volume_cli.deps import install
from volume_cli.errors import VolumeCliError
from tests.helpers import PY as PY  # re-exported: the deps tests import it from here
from volume_cli.deps.documents import EntryInfo, TopItem
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.project.discovery import load_project_folder
root, folder, mirror, cache, wait = sys.argv[1:6]
try:
    result = install(layout=VolumeLayout(Path(root)), project=load_project_folder(Path(folder)), mirror=mirror,
                     cache_dir=Path(cache), progress=NullProgress(), wait_seconds=float(wait))
except VolumeCliError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    sys.exit(1)
print(json.dumps({"generation": result.generation, "noop": result.noop}))
"""


def run_install_subprocess(
    layout: VolumeLayout, folder: Path, *, mirror: str, cache: Path, wait: float = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-c", _DRIVER, str(layout.root), str(folder), mirror, str(cache), str(wait)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
        timeout=120,
    )


def start_install_subprocess(
    layout: VolumeLayout, folder: Path, *, mirror: str, cache: Path, wait: float = 0
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(layout.root), str(folder), mirror, str(cache), str(wait)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def import_values(path: Path, expressions: dict[str, str], *, python: str | Path = sys.executable) -> dict[str, object]:
    """Evaluate ``expressions`` in a fresh interpreter whose only extra path is ``path`` (a forest)."""
    imports = sorted({expression.rsplit(".", 1)[0] for expression in expressions.values()})
    code = "\n".join(
        [
            "import json, sys",
            f"sys.path.insert(0, {str(path)!r})",
            *[f"import {module}" for module in imports],
            f"print(json.dumps({{key: eval(value) for key, value in {expressions!r}.items()}}))",
        ]
    )
    # -B: a test import must not write bytecode into the (immutable) store entries
    completed = subprocess.run([str(python), "-I", "-B", "-c", code], capture_output=True, text=True, timeout=60)
    if completed.returncode != 0:
        raise AssertionError(f"import through {path} failed:\n{completed.stderr}")
    return dict(json.loads(completed.stdout))


def tree_snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with what it is (link target for symlinks)."""
    snapshot: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            relative = str(path.relative_to(root))
            snapshot[relative] = (
                "link:" + os.readlink(path) if path.is_symlink() else ("dir" if path.is_dir() else "file")
            )
    return snapshot


def store_entry(layout: VolumeLayout, key: str, files: dict[str, str]) -> EntryInfo:
    """A store entry ``key`` holding ``files`` (path -> text), and its record, as an install would list it."""
    top: dict[str, bool] = {}
    for path, text in files.items():
        target = layout.store_dir / key / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        head, _, rest = path.partition("/")
        top[head] = top.get(head, False) or bool(rest)
    items = [TopItem(name=name, is_dir=is_dir) for name, is_dir in sorted(top.items())]
    return EntryInfo(entry=key, name=key.split("-")[0], version="1", top_level=items)
