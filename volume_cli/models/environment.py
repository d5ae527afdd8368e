"""Environment variables that point the hub clients at the volume (for workers, pods and start.sh).

The model caches are on the volume; client scratch space (HF's xet chunk
cache, ModelScope's temp and lock folders are inside its cache, so only
HF needs one) stays on the machine's local disk, because the network
file system makes every small file operation a round trip.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from volume_cli.layout import VolumeLayout
from volume_cli.runtime import local_cache_variables


def client_environment(
    layout: VolumeLayout, *, scratch_dir: Path | None = None, offline: bool = True
) -> dict[str, str]:
    """``offline`` (the default for workers): clients read the volume and never call the hub."""
    scratch = scratch_dir or Path(tempfile.gettempdir()) / "volume-cli-scratch"
    env = {
        "HF_HOME": str(layout.hf_home),
        "HF_HUB_CACHE": str(layout.hf_hub_cache),
        "HF_HUB_ETAG_TIMEOUT": "30",
        "HF_HUB_DOWNLOAD_TIMEOUT": "60",
        "MODELSCOPE_CACHE": str(layout.modelscope_cache),
        "TORCH_HOME": str(layout.torch_home),
        # what the clients and the libraries around them write at run time (xet chunks, remote code, ...)
        **local_cache_variables(scratch),
    }
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env
