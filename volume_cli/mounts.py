"""Is the root a separate (network) volume or a folder on the pod's own disk?

Data on the pod's container disk is lost when the pod is deleted, and users
regularly run setup against a plain /workspace folder by mistake.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

NETWORK_FS_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "lustre",
        "9p",
        "virtiofs",
        "gcsfuse",
        "beegfs",
        "gpfs",
    }
)
MountKind = Literal["network-volume", "separate-mount", "container-disk", "unknown"]


@dataclass(frozen=True)
class MountInfo:
    kind: MountKind
    mount_point: str | None
    fs_type: str | None
    source: str | None

    @property
    def persistent(self) -> bool | None:
        if self.kind == "container-disk":
            return False
        if self.kind == "unknown":
            return None
        return True

    def describe(self) -> str:
        if self.kind == "network-volume":
            return f"network volume ({self.fs_type}) mounted at {self.mount_point}"
        if self.kind == "separate-mount":
            return f"separate mount ({self.fs_type}) at {self.mount_point}"
        if self.kind == "container-disk":
            return f"a folder on the container's own disk ({self.fs_type} at {self.mount_point}); it is lost when the pod is deleted"
        return "mount unknown (no /proc/self/mountinfo)"


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def parse_mountinfo(text: str) -> list[tuple[str, str, str]]:
    """(mount point, fs type, source) for each line of /proc/self/mountinfo."""
    mounts: list[tuple[str, str, str]] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        left_fields, right_fields = left.split(), right.split()
        if len(left_fields) < 5 or len(right_fields) < 2:
            continue
        mounts.append((_unescape(left_fields[4]), right_fields[0], _unescape(right_fields[1])))
    return mounts


def classify(fs_type: str, mount_point: str) -> MountKind:
    if fs_type in NETWORK_FS_TYPES or fs_type.startswith("fuse.") or fs_type == "fuse":
        return "network-volume"
    if mount_point == "/":
        return "container-disk"
    return "separate-mount"


def inspect_mount(path: Path, *, mountinfo_path: Path = Path("/proc/self/mountinfo")) -> MountInfo:
    try:
        text = mountinfo_path.read_text()
    except OSError:
        return MountInfo("unknown", None, None, None)
    real = os.path.realpath(path)
    best: tuple[str, str, str] | None = None
    for mount_point, fs_type, source in parse_mountinfo(text):
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        # Later lines win for the same mount point: they are mounted on top.
        if inside and (best is None or len(mount_point) >= len(best[0])):
            best = (mount_point, fs_type, source)
    if best is None:
        return MountInfo("unknown", None, None, None)
    return MountInfo(classify(best[1], best[0]), best[0], best[1], best[2])
