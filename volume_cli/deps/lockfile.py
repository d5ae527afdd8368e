"""``lock_project``: resolve the project's groups into its stored pylock.toml."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from volume_cli.deps.documents import LockedPackage, pylock_path
from volume_cli.deps.locking import project_lock
from volume_cli.deps.python import TargetPython, find_interpreter
from volume_cli.deps.resolve import read_current_lock, resolve
from volume_cli.deps.uvtool import default_cache_dir, uv_binary
from volume_cli.layout import VolumeLayout
from volume_cli.progress import Progress
from volume_cli.project.definition import ProjectDefinition


@dataclass(frozen=True)
class LockResult:
    project: str
    python_version: str
    path: Path  # the stored pylock.toml
    output: Path | None  # the exported copy, when asked for
    lock_hash: str
    config_hash: str
    changed: bool  # differs from the lock stored before
    packages: tuple[LockedPackage, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["output"] = str(self.output) if self.output else None
        data["packages"] = [package.model_dump() for package in self.packages]
        return data


def lock_project(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    mirror: str | None,
    upgrade: bool = False,
    output: Path | None = None,
    cache_dir: Path | None = None,
    progress: Progress,
    wait_seconds: float = 0,
) -> LockResult:
    """Resolve all groups together for the project's Python on linux x86_64 and store the lock.

    Without ``upgrade`` every package keeps its locked version where the
    config still allows it; with it, unpinned requirements move to the newest.
    """
    python_version = project.python_version
    config_hash = project.config_hash(mirror=mirror)
    with project_lock(layout, project.name, command="deps lock", wait_seconds=wait_seconds, progress=progress):
        before = read_current_lock(layout, project.name)
        target = TargetPython(python_version, find_interpreter(python_version, uv_binary()))
        lock = resolve(
            layout=layout,
            project=project.name,
            config=project.dependencies,
            config_hash=config_hash,
            target=target,
            mirror=mirror,
            upgrade=upgrade,
            cache_dir=cache_dir or default_cache_dir(),
            progress=progress,
        )
    stored = pylock_path(layout, project.name)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stored, output)
    return LockResult(
        project=project.name,
        python_version=python_version,
        path=stored,
        output=output,
        lock_hash=lock.info.pylock_sha256,
        config_hash=config_hash,
        changed=before is None or before.info.pylock_sha256 != lock.info.pylock_sha256,
        packages=tuple(lock.info.packages),
    )
