"""``doctor``: the worker's start-up checks, plus what a pod can tell beyond them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from volume_cli.layout import VolumeLayout
from volume_cli.runtime import Inspection, inspect


@dataclass(frozen=True)
class DoctorReport:
    found: Inspection  # what a worker's activate() would see
    pending: str | None  # a pushed generation waiting for `sync apply`
    warnings: list[str]  # e.g. a generation stored without bytecode


def doctor(*, root: Path, project: str, models_hash: str | None) -> DoctorReport:
    from volume_cli.sync.manifest import pending_note

    found = inspect(project, root, models_hash=models_hash, check_links=True)
    layout = VolumeLayout(found.root)
    return DoctorReport(
        found=found,
        pending=pending_note(layout.root, project),
        warnings=_bytecode_warnings(layout, project, found.python_version),
    )


def _bytecode_warnings(layout: VolumeLayout, project: str, python_version: str | None) -> list[str]:
    """The project's generation stored without bytecode, or no interpreter here to compile the next install's."""
    if python_version is None:
        return []
    from volume_cli.deps.status import bytecode_warnings
    from volume_cli.deps.uvtool import uv_binary

    return bytecode_warnings(layout=layout, project=project, python_version=python_version, uv=uv_binary())
