"""Named crash points, so tests can kill an install at the worst moments.

``VOLUME_CLI_TEST_CRASH_AT=<point>`` makes the process SIGKILL itself when it
reaches ``<point>``: no cleanup handler runs, exactly like a pod being
evicted. ``VOLUME_CLI_TEST_PAUSE_AT=<point>=<folder>`` makes it create
``<folder>/<point>.reached`` and wait for ``<folder>/<point>.go``, so a test
can interleave two processes deterministically. Unset (always, outside
tests) each costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CRASH_ENV = "VOLUME_CLI_TEST_CRASH_AT"
PAUSE_ENV = "VOLUME_CLI_TEST_PAUSE_AT"

POINTS = (
    "early-forest-built",  # the kept entries linked in the temp generation while uv installs the changed ones
    "staged",  # uv finished installing into the staging folder
    "entries-distributed",  # files moved into temp entries, none in the store yet
    "published",  # entries copied into the run's staging folder on the volume, none renamed into the store yet
    "first-entry-stored",  # one entry renamed into the store
    "forest-built",  # new generation folder complete under its temp name
    "generation-recorded",  # generation record written, folder not yet renamed
    "before-switch",  # generation in place, current link not yet switched
    "switched",  # current link switched, state.json not yet written
    "spare-built",  # the next install's spare forest linked under its temp name, not renamed into place yet
)


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get(PAUSE_ENV)
    if pause and pause.partition("=")[0] == name:
        _pause(name, Path(pause.partition("=")[2]))


def _pause(name: str, folder: Path) -> None:
    (folder / f"{name}.reached").touch()
    deadline = time.monotonic() + 120
    while not (folder / f"{name}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
