"""Console scripts in a generation's bin/ run on a worker: a portable shebang, RECORD agreeing, bin/ on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import Projects
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.consumer_env import consumer_env, render_env
from volume_cli.deps import check, install
from volume_cli.deps.scripts import rewritten
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import PY

TOOL_FILES = {
    "tooly/__init__.py": "def main():\n    print('tooly says hi')\n",
    "tooly-1.0.dist-info/entry_points.txt": "[console_scripts]\ntooly = tooly:main\n",
    "tooly-1.0.data/scripts/tooly-raw": "#!python\nprint('raw script')\n",
    "tooly-1.0.data/scripts/tooly-sh": "#!/bin/sh\necho shell script\n",
}


def test_rewritten_shebangs() -> None:
    assert rewritten(b"#!/root/.pyenv/versions/3.10.13/bin/python3.10\nimport sys\n", "3.10") == (
        b"#!/usr/bin/env python3.10\nimport sys\n"
    )
    trampoline = b"#!/bin/sh\n'''exec' \"/very long/path/bin/python\" \"$0\" \"$@\"\n' '''\nimport sys\n"
    assert rewritten(trampoline, "3.11") == b"#!/usr/bin/env python3.11\nimport sys\n"
    assert rewritten(b"#!/bin/sh\necho hi\n", "3.10") is None
    assert rewritten(b"\x7fELF\x02\x01", "3.10") is None


def test_generation_scripts_are_portable_checked_intact_and_on_path(
    layout: VolumeLayout, projects: Projects, tmp_path: Path, isolated_uv: Path
) -> None:
    wheels = tmp_path / "wheels-tools"
    build_wheel(wheels, "tooly", "1.0", files=TOOL_FILES)
    progress = NullProgress()
    project = projects.make("tools", {"main": {"packages": ["tooly==1.0"]}})
    with IndexServer(wheels) as index:
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    bin_dir = layout.deps_path("tools", PY) / "bin"
    first_lines = {script.name: script.read_bytes().split(b"\n", 1)[0] for script in bin_dir.iterdir()}
    portable = f"#!/usr/bin/env python{PY}".encode()
    assert first_lines == {"tooly": portable, "tooly-raw": portable, "tooly-sh": b"#!/bin/sh"}

    report = check(layout=layout, project=project, progress=progress, imports=False)
    assert report.ok and not report.file_problems, report  # RECORD was updated with the rewrite

    env = consumer_env(layout=layout, project="tools", python_version=PY, mount=None)
    shell = render_env(env, "shell")
    assert f"export PATH={bin_dir}" in shell
    assert not any(line.startswith("PATH=") for line in render_env(env, "dotenv").splitlines())
    script = tmp_path / "env.sh"
    script.write_text(shell)
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    ran = subprocess.run(
        ["bash", "-c", f". {script} && tooly && tooly-raw"], capture_output=True, text=True, env=clean, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["tooly says hi", "raw script"]
