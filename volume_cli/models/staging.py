"""Where partial downloads and imports wait on the volume, and the folders under models/ we manage.

Partials live on the volume (not the pod's disk) so the final rename is
atomic and another pod can resume them; the file operations themselves are
``volume_cli/fileops.py``, shared with the deps engine.
"""

from __future__ import annotations

from pathlib import Path

from volume_cli.layout import VolumeLayout

STAGING_NAME = ".volume-cli-staging"
# Top-level folders under models/ that the engine manages; url/local dests may not use them.
MANAGED_TOP_LEVEL = frozenset({"huggingface", "modelscope", "torch", STAGING_NAME})


def staging_dir(layout: VolumeLayout) -> Path:
    """Partial downloads live on the volume so the final rename is atomic and another pod can resume."""
    return layout.models_dir / STAGING_NAME
