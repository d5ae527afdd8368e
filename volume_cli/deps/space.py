"""Free-space check before installing: refuse up front instead of filling the volume halfway.

The lock records each wheel's size. An installed distribution is larger than its zip-compressed wheel
(about 2-3x for typical packages), so the estimate is a multiple of the sizes plus a small margin.
A package whose size the index did not report counts as nothing: the check can only under-estimate.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from volume_cli.deps.documents import LockedPackage
from volume_cli.errors import DiskSpaceError

UNPACK_FACTOR = 3
MARGIN_BYTES = 1024 * 1024


def estimated_install_bytes(packages: Sequence[LockedPackage]) -> int:
    return sum((package.artifact.size or 0) for package in packages) * UNPACK_FACTOR


def free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_install_space(root: Path, packages: Sequence[LockedPackage]) -> None:
    """Raise ``DiskSpaceError`` when the volume at ``root`` cannot hold ``packages`` once unpacked."""
    estimate = estimated_install_bytes(packages)
    if estimate == 0:
        return
    free = free_bytes(root)
    if estimate + MARGIN_BYTES > free:
        wheels = estimate // UNPACK_FACTOR
        raise DiskSpaceError(
            f"installing {len(packages)} distributions needs about {_mb(estimate)} "
            f"({_mb(wheels)} of wheels, unpacked) but the volume {root} has {_mb(free)} free",
            hint=f"free space with: volume-cli gc --root {root}  (old generations, unused store entries), "
            "or grow the volume",
        )


def _mb(amount: int) -> str:
    return f"{amount / (1024 * 1024):.1f} MB"
