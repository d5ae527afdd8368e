"""The runtime copy on the volume is imported by every worker: none of them may write its bytecode there."""

from __future__ import annotations

import os
import subprocess
import sys

from volume_cli.consumer_env import write_runtime_copy
from volume_cli.layout import VolumeLayout


def test_importing_the_runtime_copy_writes_no_bytecode_onto_the_volume(layout: VolumeLayout) -> None:
    runtime = write_runtime_copy(layout)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    code = f"import sys; sys.path.insert(0, {str(runtime.parent)!r}); import volume_cli_runtime"

    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)

    written = [path.name for path in runtime.parent.rglob("*.pyc")]
    assert written == [], f"a worker wrote bytecode onto the volume: {written}"
    assert write_runtime_copy(layout) == runtime  # the next install keeps the blocker as it is
