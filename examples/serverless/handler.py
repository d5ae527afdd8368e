"""A RunPod-style serverless handler that runs entirely from the network volume.

The image holds only Python and this file. ``activate`` checks that the
worker's Python matches the project's, that deps and models are installed,
pins sys.path to the current dependency generation and sets the model cache
variables; if anything is missing it fails at start-up with the command to
run on a pod, instead of downloading gigabytes at every cold start. With the
Dockerfile's PYTHONPATH (the project's boot folder) the process is already
pinned to a generation when it starts; ``activate`` keeps that one.
"""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path
from typing import Any

PROJECT = os.environ.get("VOLUME_CLI_PROJECT", "demo")
RUNTIME_FILE = ".metadata/runtime/volume_cli_runtime.py"


def _activate() -> Any:
    try:
        from volume_cli.runtime import activate
    except ImportError:  # the usual case on a worker: nothing but Python and the volume
        root = os.environ.get("VOLUME_CLI_ROOT") or next(
            (candidate for candidate in ("/runpod-volume", "/workspace") if Path(candidate).is_dir()), "/runpod-volume"
        )
        activate = runpy.run_path(str(Path(root) / RUNTIME_FILE))["activate"]
    return activate(PROJECT)


ACTIVATION = _activate()


def load_model() -> dict[str, Any]:
    """Load the demo project's model from the shared models folder (no download)."""
    model_dir = ACTIVATION.root / "models" / "demo" / "tiny-model"
    config = json.loads((model_dir / "config.json").read_text())
    vocabulary = (model_dir / "vocab.txt").read_text().split()
    return {"config": config, "vocabulary": vocabulary}


MODEL = load_model()


def handler(job: dict[str, Any]) -> dict[str, Any]:
    """Tokenise the input with the model's vocabulary, using a library from the volume."""
    import requests  # from the volume's dependency generation, not the image

    words = str(job.get("input", {}).get("text", "")).lower().split()
    known = [word for word in words if word in MODEL["vocabulary"]]
    return {
        "model_type": MODEL["config"]["model_type"],
        "known_words": known,
        "requests_version": requests.__version__,
        "deps_from": str(ACTIVATION.sys_path_entry),
    }


if __name__ == "__main__":
    if os.environ.get("RUNPOD_ENDPOINT_ID"):
        import runpod  # installed on the volume by the project's dependencies

        runpod.serverless.start({"handler": handler})
    else:
        print(json.dumps(handler({"input": {"text": "hello volume world"}}), indent=2))
