"""The four user stories, each through the installed volume-cli in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import MODEL_FILES, PY, STORY_MODELS, Volume
from tests.wheelfactory import pyenv_python


def story_project(volume: Volume, name: str = "story") -> Path:
    folder = volume.write_project(
        name,
        {"main": ["alpha==1.0", "gamma"], "extras": ["beta"]},
        models=STORY_MODELS,
    )
    (folder / "weights").mkdir(exist_ok=True)
    (folder / "weights" / "w.bin").write_bytes(b"\x01" * 1000)
    return folder


def import_from(
    path: Path, code: str, env: dict[str, str] | None = None, python: str = sys.executable, flags: tuple[str, ...] = ()
) -> str:
    result = subprocess.run(
        [python, *flags, "-c", code],
        cwd="/",  # not the repository: its volume_cli must not be importable by accident
        capture_output=True,
        text=True,
        env={**(env or {}), "PYTHONPATH": str(path)} if env is None else env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.e2e
def test_story_1_setup_on_a_temporary_pod(volume: Volume) -> None:
    story_project(volume)
    result = volume.run("setup", "--project", "story")
    assert "ok     deps" in result.stdout and "ok     models" in result.stdout
    status = volume.json("status", "--project", "story")
    (project,) = status["projects"]
    assert project["state"] == "installed", project
    assert project["deps"]["installed"] and not project["deps"]["generation_differs_from_lock"]
    assert project["models_missing"] == [] and project["models_size_bytes"] > 0
    deps = volume.root / "python-deps" / f"py{PY}" / "story"
    assert deps.is_symlink() and not os.path.isabs(os.readlink(deps))
    assert import_from(deps, "import alpha, beta, gamma, delta; print(alpha.VERSION)") == "1.0"
    snapshot = next(
        (volume.root / "models" / "huggingface" / "hub" / "models--story-org--tiny" / "snapshots").iterdir()
    )
    assert (snapshot / "model.safetensors").read_bytes() == MODEL_FILES["model.safetensors"]
    assert (volume.root / "models" / "story" / "local-weights" / "w.bin").stat().st_size == 1000

    # The second setup is a no-op: no resolver, no index, no hub.
    volume.hub.clear_requests()
    requests_before = len(volume.index.requests)
    again = volume.run("setup", "--project", "story")
    assert "up to date" in again.stdout
    assert volume.hub.requests == [] and len(volume.index.requests) == requests_before


@pytest.mark.e2e
def test_story_2_incremental_update_and_rollback(volume: Volume) -> None:
    folder = story_project(volume)
    volume.run("setup", "--project", "story")
    first = volume.json("status", "--project", "story")["projects"][0]["generation"]

    # bump alpha, add epsilon, remove gamma (its dependency delta must go too)
    (folder / "dependencies.yaml").write_text(
        "groups:\n  main:\n    packages: [alpha==2.0, epsilon]\n  extras:\n    packages: [beta]\n"
    )
    assert volume.json("status", "--project", "story")["projects"][0]["state"] == "config changed"
    dry = volume.json("deps", "install", "--project", "story", "--dry-run")
    plan = dry["plan"]
    assert [change["name"] for change in plan["upgrade"]] == ["alpha"]
    assert [change["name"] for change in plan["add"]] == ["epsilon"]
    assert sorted(change["name"] for change in plan["remove"]) == ["delta", "gamma"]
    assert volume.json("status", "--project", "story")["projects"][0]["generation"] == first  # dry run changed nothing

    result = volume.json("deps", "install", "--project", "story")
    assert result["installed_count"] == 2  # alpha 2.0 and epsilon; beta is reused
    status = volume.json("status", "--project", "story")["projects"][0]
    assert status["generation"] != first and status["state"] == "installed"
    deps = volume.root / "python-deps" / f"py{PY}" / "story"
    assert import_from(deps, "import alpha, epsilon; print(alpha.VERSION)") == "2.0"
    gone = subprocess.run([sys.executable, "-c", "import gamma"], env={"PYTHONPATH": str(deps)}, capture_output=True)
    assert gone.returncode != 0

    rolled = volume.json("deps", "rollback", "--project", "story")
    assert rolled["to_generation"] == first
    assert import_from(deps, "import alpha, gamma; print(alpha.VERSION)") == "1.0"
    assert volume.json("status", "--project", "story")["projects"][0]["generation"] == first


@pytest.mark.e2e
def test_story_3_status_points_at_the_broken_project(volume: Volume) -> None:
    story_project(volume, "healthy")
    story_project(volume, "broken")
    volume.run("setup", "--project", "healthy")
    volume.run("setup", "--project", "broken")

    # Damage the broken project: a model file it alone owns and a file of a distribution it alone uses.
    (volume.root / "models" / "story" / "local-weights" / "w.bin").unlink()
    volume.write_project(
        "broken", {"main": ["alpha==1.0", "gamma"], "extras": ["beta"], "solo": ["epsilon"]}, models=STORY_MODELS
    )
    volume.run("deps", "install", "--project", "broken")
    epsilon_file = next((volume.root / "python-deps" / f"py{PY}" / "broken").resolve().joinpath("epsilon").iterdir())
    epsilon_file.resolve().unlink()

    status = volume.run("status")
    assert status.returncode == 0
    assert "models missing" in status.stdout  # the local model both share is gone
    check_healthy = volume.run("deps", "check", "--project", "healthy", check=False)
    assert check_healthy.returncode == 0, check_healthy.stdout + check_healthy.stderr
    check_broken = volume.run("deps", "check", "--project", "broken", check=False)
    assert check_broken.returncode == 1
    assert (
        "epsilon" in check_broken.stdout and "error:" in check_broken.stderr and "Traceback" not in check_broken.stderr
    )
    verify = volume.run("models", "verify", "--project", "broken", check=False)
    assert verify.returncode == 1 and "w.bin" in verify.stdout and "next: volume-cli models download" in verify.stderr
    # and the repair: download fetches what is missing, then verify passes
    volume.run("models", "download", "--project", "broken")
    assert volume.run("models", "verify", "--project", "broken", "--deep").returncode == 0


def _remount(volume: Volume, tmp_path: Path) -> Path:
    """The pod→worker path change: the same volume seen at another path."""
    worker_root = tmp_path / "runpod-volume"
    shutil.move(str(volume.root), worker_root)
    return worker_root


@pytest.mark.e2e
def test_story_4_serverless_worker_with_only_the_env(volume: Volume, tmp_path: Path) -> None:
    story_project(volume)
    volume.run("setup", "--project", "story")
    worker_root = tmp_path / "runpod-volume"
    env_json = json.loads(
        volume.run("env", "--project", "story", "--mount", str(worker_root), "--format", "json").stdout
    )
    assert env_json["HF_HUB_OFFLINE"] == "1" and env_json["PYTHONPATH"].startswith(str(worker_root))
    assert env_json["PYTHONDONTWRITEBYTECODE"] == "1"  # workers never write into shared store entries
    _remount(volume, tmp_path)
    volume.hub.clear_requests()
    worker_env = {"PATH": os.environ["PATH"], **env_json}
    code = (
        "import alpha, json; from huggingface_hub import snapshot_download;"
        "path = snapshot_download('story-org/tiny');"
        "print(json.dumps([alpha.VERSION, open(path + '/config.json').read()]))"
    )
    version, config = json.loads(import_from(Path(), code, env=worker_env))
    assert version == "1.0" and json.loads(config)["model_type"] == "story"
    assert volume.hub.requests == [], "the worker must not call the hub"

    # The same through the runtime file on the volume, with nothing of volume-cli importable.
    runtime = worker_root / ".metadata" / "runtime" / "volume_cli_runtime.py"
    activate = (
        "import runpy, sys, os, json;"
        f"activation = runpy.run_path({str(runtime)!r})['activate']('story', {str(worker_root)!r});"
        "import alpha;"
        "print(json.dumps([str(activation.sys_path_entry), os.environ['HF_HUB_OFFLINE'], alpha.VERSION,"
        " any('volume_cli' in name for name in sys.modules), sys.dont_write_bytecode]))"
    )
    entry, offline, version, imported_tool, no_bytecode = json.loads(
        # -S: no site-packages, so neither volume-cli nor anything else installed is importable
        import_from(Path(), activate, env={"PATH": os.environ["PATH"]}, flags=("-S",))
    )
    assert entry.startswith(str(worker_root / "python-deps" / f"py{PY}" / ".generations")) and offline == "1"
    assert version == "1.0" and imported_tool is False and no_bytecode is True


@pytest.mark.e2e
def test_env_forms_work_when_used(volume: Volume) -> None:
    story_project(volume)
    volume.run("setup", "--project", "story")
    shell = volume.run("env", "--project", "story").stdout
    script = f'export PYTHONPATH=/already/there\n{shell}\npython -c "import alpha, sys; print(alpha.VERSION); print(sys.path[1:3])"'
    # With no PYTHONPATH before, eval leaves exactly the deps path (no stray ':').
    evaluated = subprocess.run(
        ["bash", "-c", 'unset PYTHONPATH; eval "$(cat)"; echo "$PYTHONPATH"'],
        input=shell,
        capture_output=True,
        text=True,
    )
    assert evaluated.returncode == 0 and evaluated.stdout.strip() == str(
        volume.root / "python-deps" / f"py{PY}" / ".boot" / "story"
    )
    kept = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.splitlines()[0] == "1.0" and "/already/there" in kept.stdout
    dotenv = volume.run("env", "--project", "story", "--format", "dotenv").stdout
    values = dict(line.split("=", 1) for line in dotenv.splitlines())
    assert values["HF_HUB_CACHE"] == str(volume.root / "models" / "huggingface" / "hub")
    assert values["PYTHONPATH"] == str(volume.root / "python-deps" / f"py{PY}" / ".boot" / "story")
    docker = volume.run("env", "--project", "story", "--format", "dockerfile").stdout
    assert all(line.startswith("ENV ") and json.loads(line.split("=", 1)[1]) for line in docker.splitlines())


@pytest.mark.e2e
def test_activate_and_doctor_on_matching_and_mismatching_python(volume: Volume) -> None:
    other = "3.10" if PY != "3.10" else "3.11"
    other_python = pyenv_python(other)
    if other_python is None:
        pytest.skip(f"no CPython {other} under pyenv")
    story_project(volume)
    volume.run("setup", "--project", "story")
    assert volume.run("doctor", "--project", "story").returncode == 0
    runtime = volume.root / ".metadata" / "runtime" / "volume_cli_runtime.py"
    code = f"import runpy; runpy.run_path({str(runtime)!r})['activate']('story', {str(volume.root)!r})"
    mismatch = subprocess.run([str(other_python), "-c", code], capture_output=True, text=True)
    assert mismatch.returncode != 0
    assert f"installed for Python {PY} but this worker runs Python {other}" in mismatch.stderr

    # missing deps, then missing models: each names the command to run on a pod
    volume.write_project("nodeps", {"main": ["beta"]}, models=STORY_MODELS)
    volume.run("models", "download", "--project", "nodeps")
    missing = subprocess.run(
        [sys.executable, "-c", code.replace("'story'", "'nodeps'")], capture_output=True, text=True
    )
    assert missing.returncode != 0 and "volume-cli deps install --project nodeps" in missing.stderr
    volume.write_project("nomodels", {"main": ["beta"]}, models=STORY_MODELS)
    volume.run("deps", "install", "--project", "nomodels")
    no_models = subprocess.run(
        [sys.executable, "-c", code.replace("'story'", "'nomodels'")], capture_output=True, text=True
    )
    assert no_models.returncode != 0 and "volume-cli models download --project nomodels" in no_models.stderr
    doctor = volume.run("doctor", "--project", "nomodels", check=False)
    assert doctor.returncode == 1 and "next: volume-cli models download --project nomodels" in doctor.stderr


@pytest.mark.e2e
def test_project_for_another_python_activates_there(volume: Volume) -> None:
    other = "3.10" if PY != "3.10" else "3.11"
    other_python = pyenv_python(other)
    if other_python is None:
        pytest.skip(f"no CPython {other} under pyenv")
    volume.write_project("older", {"main": ["alpha==1.0"]}, python=other)
    volume.run("setup", "--project", "older")
    runtime = volume.root / ".metadata" / "runtime" / "volume_cli_runtime.py"
    code = (
        f"import runpy; runpy.run_path({str(runtime)!r})['activate']('older', {str(volume.root)!r});"
        "import alpha; print(alpha.VERSION)"
    )
    result = subprocess.run([str(other_python), "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.0"


@pytest.mark.e2e
def test_handler_example_runs_against_a_test_volume(volume: Volume, tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parents[2] / "projects" / "demo"
    copy = volume.projects / "demo"
    shutil.copytree(demo, copy)
    (copy / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [alpha==1.0]\n")
    project_yaml = (
        (copy / "project.yaml").read_text().replace('"3.11"', f'"{PY}"').replace("name: demo", "name: handler-demo")
    )
    (copy / "project.yaml").write_text(project_yaml)
    volume.run("setup", "--project", "handler-demo")
    handler = Path(__file__).resolve().parents[2] / "examples" / "serverless" / "handler.py"
    code = (
        "import importlib.util, json, sys;"
        f"spec = importlib.util.spec_from_file_location('handler', {str(handler)!r});"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module);"
        "import alpha; print(json.dumps([module.MODEL['config']['model_type'], alpha.VERSION, str(module.ACTIVATION.sys_path_entry)]))"
    )
    env = {"PATH": os.environ["PATH"], "VOLUME_CLI_ROOT": str(volume.root), "VOLUME_CLI_PROJECT": "handler-demo"}
    model_type, version, entry = json.loads(import_from(Path(), code, env=env))
    assert model_type == "tiny-demo" and version == "1.0" and "/.generations/handler-demo/" in entry


@pytest.mark.e2e
def test_models_gc_keeps_models_of_projects_set_up_elsewhere(volume: Volume, tmp_path: Path) -> None:
    story_project(volume, "kept")
    volume.run("setup", "--project", "kept")
    elsewhere = tmp_path / "other-projects"
    elsewhere.mkdir()
    # From a pod that only knows an unrelated project, gc must not delete "kept"'s models.
    argv_projects = ["--projects-dir", str(elsewhere)]
    (elsewhere / "other").mkdir()
    (elsewhere / "other" / "project.yaml").write_text(f'name: other\npython_version: "{PY}"\n')
    (elsewhere / "other" / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [beta]\n")
    result = json.loads(volume.run("models", "gc", *argv_projects, "--json", "--yes").stdout)
    assert result["removed"] == []
    assert volume.run("models", "verify", "--project", "kept").returncode == 0
    # models rm removes explicitly, and verify then fails for that project
    volume.run("models", "rm", "local/story/local-weights", "--root", str(volume.root), "--yes")
    assert volume.run("models", "verify", "--project", "kept", check=False).returncode == 1


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.e2e
def test_start_script_ensures_models_then_starts_the_worker(volume: Volume) -> None:
    story_project(volume)
    volume.run("setup", "--project", "story")
    volume.hub.clear_requests()
    cli_dir = str(Path(volume_cli_path()).parent)
    env = {
        **volume.env,
        "PATH": f"{cli_dir}:{os.environ['PATH']}",
        "PROJECT": "story",
        "VOLUME_CLI_ROOT": str(volume.root),
        "VOLUME_CLI_PROJECTS_PATH": str(volume.projects),
    }
    worker = [sys.executable, "-c", "import os; print(os.environ['HF_HUB_OFFLINE'], os.environ['HF_HUB_CACHE'])"]
    started = subprocess.run(["bash", str(EXAMPLES / "start.sh"), *worker], capture_output=True, text=True, env=env)
    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == ["1", str(volume.root / "models" / "huggingface" / "hub")]
    assert volume.hub.requests == []  # models present: no request at start-up

    # a model went missing and start-up downloads are off: the worker must not start
    shutil.rmtree(volume.root / "models" / "story")
    refused = subprocess.run(
        ["bash", str(EXAMPLES / "start.sh"), *worker],
        capture_output=True,
        text=True,
        env={**env, "DOWNLOAD_MODELS_ON_STARTUP": "false"},
    )
    assert refused.returncode == 1 and "not complete" in refused.stderr and refused.stdout == ""


def volume_cli_path() -> str:
    from tests.helpers import volume_cli_command

    return volume_cli_command()[0]


def test_serverless_dockerfile_matches_env_output(tmp_path: Path) -> None:
    """The example's ENV lines are what `env --format dockerfile` prints for the demo project."""
    root = tmp_path / "root"
    root.mkdir()
    printed = subprocess.run(
        [
            volume_cli_path(),
            "env",
            "--project",
            "demo",
            "--root",
            str(root),
            "--mount",
            "/runpod-volume",
            "--format",
            "dockerfile",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.splitlines()
    dockerfile = (EXAMPLES / "serverless" / "Dockerfile").read_text().splitlines()
    env_lines = [line for line in dockerfile if line.startswith("ENV ") and "VOLUME_CLI_PROJECT" not in line]
    # HF_HUB_OFFLINE is printed only once every model is present; the example assumes a set-up volume.
    assert [line for line in env_lines if "HF_HUB_OFFLINE" not in line] == printed
    assert 'ENV HF_HUB_OFFLINE="1"' in env_lines
