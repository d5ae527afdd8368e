"""A fresh journaled ext4 file system on a loop device: the benchmarks' local disk and the volume's backing.

Why: this machine's root file system is ext4 *without a journal*, aged by every benchmark's
installs and removals. With no journal, ext4's inode allocator checks, for every free inode it
considers, whether that inode was deleted in the last minute (``find_inode_bit`` →
``recently_deleted``, five minutes while its inode-table block is dirty), and skips it if so:
after a step removed ~19k files (a staging folder, an old copy), every create scans past them.
``perf`` put 40-45% of a worker's first start there (``find_get_block_common``,
``recently_deleted``): its local copy of the 44-wheel set took 4.2-5.8 s on the root disk and
1.75-2.0 s on a fresh journaled ext4 (1.7 s on tmpfs). The simulated volume's server writes
its backing files on the same disk, so its CPU, which a real volume server spends on its own
machine, was taken from the pod's two cores (8.7 s against 5.6 s for a full install).

A pod's container disk and a volume server's disks are journaled file systems (overlayfs on
ext4 or xfs), so the benchmarks default to one made for the run (``--disk fresh``) and keep
the root disk as an option (``--disk here``). Needs root, ``mkfs.ext4`` and loop devices.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

DISKS = ("fresh", "here")
DEFAULT_SIZE_GB = 32  # sparse: only what is written takes room on the disk below


def unavailable_reason() -> str | None:
    """Why a fresh disk cannot be made here, or None."""
    if os.geteuid() != 0:
        return "mounting a loop device needs root"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/dev/loop-control").exists():
        return "/dev/loop-control is missing (no loop devices)"
    return None


@contextlib.contextmanager
def fresh_disk(where: Path, *, size_gb: int = DEFAULT_SIZE_GB) -> Iterator[Path]:
    """Mount a new ext4 file system (with its journal, inode tables written now) at ``where/disk``.

    The image is a sparse file ``where/disk.img``; both are removed on exit. Inode tables are
    initialised by ``mkfs`` (``lazy_itable_init=0``) so that no kernel thread zeroes them during
    the measurements.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(f"--disk fresh: {reason} (use --disk here to run on this folder's disk)")
    image, mountpoint = where / "disk.img", where / "disk"
    mountpoint.mkdir(parents=True)
    with open(image, "wb") as stream:
        stream.truncate(size_gb << 30)
    try:
        options = "lazy_itable_init=0,lazy_journal_init=0"
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", options, str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)
        try:
            yield mountpoint
        finally:
            if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(mountpoint)], check=False)
    finally:
        image.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()
