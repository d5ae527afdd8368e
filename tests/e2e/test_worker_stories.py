"""Workers through the installed volume-cli: a long-lived worker across an install, a removed model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_stories import story_project
from tests.helpers import Volume

WORKER = """
import sys, time
from pathlib import Path
import beta
print("started", flush=True)
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.02)
import alpha  # lazily, after an install switched the generation
print(alpha.VERSION, alpha.__file__, beta.__file__)
"""


@pytest.mark.e2e
def test_a_long_lived_worker_keeps_its_generation_across_an_install(volume: Volume, tmp_path: Path) -> None:
    folder = story_project(volume)
    volume.run("setup", "--project", "story")
    shell = volume.run("env", "--project", "story").stdout
    go = tmp_path / "go"
    script = f'{shell}\nexec {sys.executable} -c "$WORKER" {go}'
    worker = subprocess.Popen(
        ["bash", "-c", script],
        env={"PATH": os.environ["PATH"], "WORKER": WORKER},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "started"
        (folder / "dependencies.yaml").write_text(
            (folder / "dependencies.yaml").read_text().replace("alpha==1.0", "alpha==2.0")
        )
        volume.run("deps", "install", "--project", "story")
        go.touch()
        out, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    version, alpha_file, beta_file = out.split()
    assert version == "1.0"  # the generation it started with, whole
    assert "/.generations/story/" in beta_file  # imported from a generation, not through the switchable link
    generation = beta_file.split("/.generations/story/")[1].split("/")[0]
    assert f"/.generations/story/{generation}/" in alpha_file
    fresh = subprocess.run(
        ["bash", "-c", f"{shell}\n{sys.executable} -c 'import alpha; print(alpha.VERSION)'"],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
    )
    assert fresh.stdout.strip() == "2.0", fresh.stderr  # a new process takes the new one


@pytest.mark.e2e
def test_after_models_rm_doctor_fails_and_env_stops_promising_offline(volume: Volume) -> None:
    story_project(volume)
    volume.run("setup", "--project", "story")
    assert volume.run("doctor", "--project", "story").returncode == 0
    volume.run("models", "rm", "local/story/local-weights", "--yes")
    doctor = volume.run("doctor", "--project", "story", check=False)
    assert doctor.returncode != 0 and "local/story/local-weights" in doctor.stderr
    env = json.loads(volume.run("env", "--project", "story", "--format", "json").stdout)
    assert "HF_HUB_OFFLINE" not in env
