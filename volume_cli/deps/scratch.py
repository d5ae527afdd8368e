"""The pod's local scratch folder, where uv installs and bytecode is compiled before anything reaches the volume.

On a network volume every file operation is a round trip; on the pod's own
disk it is nearly free. So uv installs into a staging folder here, next to
uv's cache (same disk: uv can hard-link from its cache), entries are sorted
out and compiled here, and only finished entries are copied to the volume
(``deps/publish.py``). One subfolder per run, named like the volume's
staging folders (host, pid, process tag), so a killed run's is recognised
and removed by the next one.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

from volume_cli.deps.entries import STALE_STAGING_SECONDS, Staging, remove_stale_stagings, staging_name
from volume_cli.errors import ScratchError
from volume_cli.layout import VolumeLayout
from volume_cli.runner import start_detached

SCRATCH_ENV = "VOLUME_CLI_SCRATCH"


def scratch_dir(layout: VolumeLayout, cache_dir: Path) -> Path:
    """``VOLUME_CLI_SCRATCH``, else a folder beside uv's cache, else one in the system's temp folder.

    Never on the volume: a folder there would cost the round trips this
    folder exists to save (a uv cache placed on the volume falls through
    to the temp folder).
    """
    explicit = os.environ.get(SCRATCH_ENV, "").strip()
    if explicit:
        folder = Path(explicit).expanduser()
        problem = _unusable(folder, layout)
        if problem is not None:
            raise ScratchError(
                f"{SCRATCH_ENV}={folder} cannot hold the install's staging folder: {problem}",
                hint=f"set {SCRATCH_ENV} to a writable folder on the pod's local disk, or unset it",
            )
        return folder
    candidates = [cache_dir.with_name(f"{cache_dir.name}-scratch"), Path(tempfile.gettempdir()) / _temp_name()]
    problems: list[str] = []
    for folder in candidates:
        problem = _unusable(folder, layout)
        if problem is None:
            return folder
        problems.append(f"{folder}: {problem}")
    raise ScratchError(
        "no local folder can hold the install's staging folder (" + "; ".join(problems) + ")",
        hint=f"set {SCRATCH_ENV} to a writable folder on the pod's local disk",
    )


def _temp_name() -> str:
    return f"volume-cli-scratch-{os.getuid()}"


def _unusable(folder: Path, layout: VolumeLayout) -> str | None:
    """Why ``folder`` cannot be the scratch folder, or None; creates it (private to this user) when missing."""
    real_root = os.path.realpath(layout.root)
    real = os.path.realpath(folder)
    if real == real_root or real.startswith(real_root + os.sep):
        return "it is on the volume"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = os.lstat(folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    # In a shared temp folder someone else may have made it first, as a link or their own folder.
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return "it is a symbolic link or not a folder"
    if info.st_uid != os.getuid():
        return "it belongs to another user"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "it is not writable"
    return None


def new_local_staging(scratch: Path, layout: VolumeLayout) -> Staging:
    """A fresh staging folder of this run under ``scratch``, with its ``target`` and ``entries`` folders."""
    same_disk = os.stat(scratch).st_dev == os.stat(layout.root).st_dev
    staging = Staging(scratch / staging_name(), same_disk_as_volume=same_disk)
    staging.root.mkdir(mode=0o700)
    staging.target.mkdir()
    staging.entries.mkdir()
    return staging


def cleanup_stale_scratch(scratch: Path, *, max_age_seconds: float = STALE_STAGING_SECONDS) -> int:
    """Remove the staging folders of killed runs on this machine; returns how many."""
    return remove_stale_stagings(scratch, max_age_seconds=max_age_seconds)


def remove_in_background(staging: Path) -> threading.Thread:
    """Hand this run's ``staging`` folder to a detached ``rm -rf``: the install does not wait for it.

    After a full install the folder holds every staged file (19k for the 44-wheel set): removing
    it took 1-3 s, the last thing the command waited for. The removal runs in its own session and
    outlives this process; if it is cut short (the pod stops), the folder's name still names this
    dead process, so the next run's ``cleanup_stale_scratch`` removes the rest. Where ``rm`` cannot
    start, the returned thread removes the folder itself (the caller joins it before returning).
    """

    def remove() -> None:
        if not start_detached(["rm", "-rf", "--", str(staging)], label="scratch-removal"):
            shutil.rmtree(staging, ignore_errors=True)

    thread = threading.Thread(target=remove, name="volume-cli-scratch-removal")
    thread.start()
    return thread
