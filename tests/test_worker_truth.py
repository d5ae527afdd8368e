"""A worker's "ok" means it will work; a failed hook is not forgotten.

- a failed ``after_install`` hook is recorded: the next ``deps install``
  runs it again (never "up to date"), ``status`` and ``doctor`` say so;
- after ``models rm`` (or a lost file) ``doctor`` / ``activate`` fail and
  ``env`` no longer promises ``HF_HUB_OFFLINE=1``;
- a project that declares no models starts after ``deps install`` alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deps import conftest as deps_fixtures
from tests.deps.helpers import run_install_subprocess
from tests.models import test_old_clients
from tests.wheelfactory import IndexServer
from volume_cli.consumer_env import consumer_env
from volume_cli.deps import install
from volume_cli.errors import InstallError
from volume_cli.flows.status import project_status
from volume_cli.layout import VolumeLayout
from volume_cli.models import download, remove
from volume_cli.models.manifest import safe_key
from volume_cli.progress import NullProgress
from volume_cli.project.discovery import load_project_folder
from volume_cli.runtime import ActivationError, activate, inspect

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
# The dependency tests' local index and uv cache.
wheels = deps_fixtures.wheels
index = deps_fixtures.index
isolated_uv = deps_fixtures.isolated_uv
old_clients = test_old_clients.old_clients  # modelscope 1.10 and friends, cached between runs
LOCAL_NAMES = (
    "NUMBA_CACHE_DIR",
    "HF_MODULES_CACHE",
    "HF_DATASETS_CACHE",
    "HF_ASSETS_CACHE",
    "HF_XET_CACHE",
    "MODELSCOPE_INDEX_FILE",
)

HOOKED = """
from pathlib import Path
from volume_cli import Project

class Hooked(Project):
    name = 'hooked'
    python_version = {python!r}

    def after_install(self, context):
        folder = context.project_folder
        with open(folder / 'calls', 'a') as calls:
            calls.write('x')
        if (folder / 'die').exists():
            import os
            os._exit(9)  # a kill -9 while the hook runs
        if (folder / 'fail').exists():
            raise RuntimeError('boom')
"""


@pytest.fixture
def hooked(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins" / "hooked"
    folder.mkdir(parents=True)
    (folder / "project.py").write_text(HOOKED.format(python=PY))
    (folder / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [delta]\n")
    return folder


def _install(layout: VolumeLayout, folder: Path, index: IndexServer, cache: Path) -> bool:
    return install(
        layout=layout, project=load_project_folder(folder), mirror=index.url, cache_dir=cache, progress=NullProgress()
    ).noop


def _calls(folder: Path) -> int:
    return len((folder / "calls").read_text())


def test_a_failed_after_install_hook_is_run_again_and_reported_until_it_succeeds(
    layout: VolumeLayout, hooked: Path, index: IndexServer, isolated_uv: Path
) -> None:
    (hooked / "fail").touch()
    with pytest.raises(InstallError, match="after_install hook failed: RuntimeError: boom"):
        _install(layout, hooked, index, isolated_uv)
    status = project_status(layout, "hooked", load_project_folder(hooked), mirror=index.url)
    assert status.state == "error" and any("after_install" in problem for problem in status.problems)
    found = inspect("hooked", layout.root, require_models=False)
    assert not found.ok and "after_install" in found.problems[0][0] and "boom" in found.problems[0][0]

    # nothing changed in the config: the install must still not say "up to date"
    with pytest.raises(InstallError, match="after_install hook failed"):
        _install(layout, hooked, index, isolated_uv)
    assert _calls(hooked) == 2

    (hooked / "fail").unlink()
    assert _install(layout, hooked, index, isolated_uv) is True  # no new generation, the hook ran
    assert _calls(hooked) == 3
    assert project_status(layout, "hooked", load_project_folder(hooked), mirror=index.url).state == "installed"
    assert inspect("hooked", layout.root, require_models=False).ok
    assert _install(layout, hooked, index, isolated_uv) is True and _calls(hooked) == 3  # done once: not again


def test_a_hook_killed_mid_way_runs_again_on_the_next_install(
    layout: VolumeLayout, hooked: Path, index: IndexServer, isolated_uv: Path
) -> None:
    (hooked / "die").touch()
    killed = run_install_subprocess(layout, hooked, mirror=index.url, cache=isolated_uv)
    assert killed.returncode == 9 and _calls(hooked) == 1
    found = inspect("hooked", layout.root, require_models=False)
    assert not found.ok and "did not finish" in found.problems[0][0]
    (hooked / "die").unlink()
    assert _install(layout, hooked, index, isolated_uv) is True
    assert _calls(hooked) == 2


MODEL_PROJECT = {
    "name": "modelled",
    "python_version": PY,
    "models": [{"source": "local", "path": "weights", "dest": "modelled/weights"}],
}


@pytest.fixture
def modelled(tmp_path: Path, layout: VolumeLayout) -> Path:
    folder = tmp_path / "projects" / "modelled"
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "config.json").write_text('{"model_type": "tiny"}')
    (folder / "weights" / "weights.bin").write_bytes(b"0123456789" * 100)
    (folder / "project.yaml").write_text(yaml.safe_dump(MODEL_PROJECT))
    (folder / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [delta]\n")
    return folder


def _set_up(layout: VolumeLayout, folder: Path, index: IndexServer, cache: Path) -> None:
    _install(layout, folder, index, cache)
    download(layout=layout, project=load_project_folder(folder), progress=NullProgress())


def test_removed_or_lost_model_files_make_doctor_and_env_tell_the_truth(
    layout: VolumeLayout, modelled: Path, index: IndexServer, isolated_uv: Path
) -> None:
    _set_up(layout, modelled, index, isolated_uv)
    assert inspect("modelled", layout.root).ok
    variables = consumer_env(layout=layout, project="modelled", python_version=PY, mount=None).variables
    assert variables.get("HF_HUB_OFFLINE") == "1"

    # a lost file (a failed copy, someone's rm): not ok, and it says which
    (layout.models_dir / "modelled" / "weights" / "weights.bin").unlink()
    found = inspect("modelled", layout.root)
    assert not found.ok and "weights.bin" in found.problems[0][0]
    assert "volume-cli models download --project modelled" in found.problems[0][1]

    _set_up(layout, modelled, index, isolated_uv)
    assert inspect("modelled", layout.root).ok
    remove(layout=layout, keys=["local/modelled/weights"])
    found = inspect("modelled", layout.root)
    assert not found.ok and not found.models_complete and "local/modelled/weights" in found.problems[0][0]
    with pytest.raises(ActivationError, match="local/modelled/weights"):
        activate("modelled", layout.root)
    env = consumer_env(layout=layout, project="modelled", python_version=PY, mount=None)
    assert "HF_HUB_OFFLINE" not in env.variables and env.models_complete is False


def test_a_project_without_models_starts_after_deps_install_alone(
    layout: VolumeLayout, tmp_path: Path, index: IndexServer, isolated_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "projects" / "plain"
    folder.mkdir(parents=True)
    (folder / "project.yaml").write_text(yaml.safe_dump({"name": "plain", "python_version": PY}))
    (folder / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [delta]\n")
    _install(layout, folder, index, isolated_uv)
    found = inspect("plain", layout.root)
    assert found.ok, found.problems
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", sys.dont_write_bytecode)
    monkeypatch.setattr(os, "environ", dict(os.environ))
    assert activate("plain", layout.root).environment["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize(
    "key", ["local/demo/tiny-model", "huggingface/model/Org/Name.v2", "url/a b/c?d=e", "modelscope/iic/x___y" * 9]
)
def test_the_runtime_finds_manifests_where_the_models_engine_writes_them(key: str) -> None:
    from volume_cli.runtime import _safe_key

    assert _safe_key(key) == safe_key(key)


# --- run-time caches stay off the volume ----------------------------------------------------------

VOLUME_CACHES = {"HF_HOME", "HF_HUB_CACHE", "MODELSCOPE_CACHE", "TORCH_HOME"}  # the model caches: on purpose


def _on_volume(value: str, root: Path) -> bool:
    return os.path.isabs(value) and os.path.realpath(value).startswith(os.path.realpath(root) + os.sep)


def _plain_project(layout: VolumeLayout, tmp_path: Path, index: IndexServer, cache: Path) -> None:
    folder = tmp_path / "projects" / "plain"
    folder.mkdir(parents=True)
    (folder / "project.yaml").write_text(yaml.safe_dump({"name": "plain", "python_version": PY}))
    (folder / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [delta]\n")
    _install(layout, folder, index, cache)


def test_env_and_activate_point_every_run_time_cache_at_local_disk(
    layout: VolumeLayout, tmp_path: Path, index: IndexServer, isolated_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volume_cli.runtime import LOCAL_CACHES

    _plain_project(layout, tmp_path, index, isolated_uv)
    local = tmp_path / "local-disk"
    printed = consumer_env(layout=layout, project="plain", python_version=PY, mount=None, local_cache=local)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", sys.dont_write_bytecode)
    monkeypatch.setattr(os, "environ", {"NUMBA_CACHE_DIR": str(layout.root / "numba")})  # one on the volume
    activated = activate("plain", layout.root, local_cache=local).environment
    for variables in (printed.variables, activated):
        assert set(LOCAL_CACHES) <= set(variables)
        for name in LOCAL_CACHES:
            assert variables[name].startswith(str(local)), (name, variables[name])
        writable_on_volume = [
            name for name, value in variables.items() if _on_volume(value, layout.root) and name not in VOLUME_CACHES
        ]
        assert writable_on_volume == [] or writable_on_volume == ["PYTHONPATH"]
    # a worker's own choice off the volume is kept
    monkeypatch.setattr(os, "environ", {"NUMBA_CACHE_DIR": "/mine/numba"})
    assert activate("plain", layout.root, local_cache=local).environment["NUMBA_CACHE_DIR"] == "/mine/numba"


def _files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def test_huggingface_hub_writes_nothing_into_the_volume_from_a_worker(
    layout: VolumeLayout, tmp_path: Path, index: IndexServer, isolated_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plain_project(layout, tmp_path, index, isolated_uv)
    local = tmp_path / "local-disk"
    monkeypatch.setenv("VOLUME_CLI_LOCAL_CACHE", str(local))
    variables = consumer_env(layout=layout, project="plain", python_version=PY, mount=None)
    before = _files(layout.root)
    code = (
        "import os; from huggingface_hub import cached_assets_path, constants;"
        "path = cached_assets_path(library_name='lib', namespace='ns', subfolder='x');"
        "(path / 'derived.bin').write_bytes(b'1');"
        "os.makedirs(constants.HF_XET_CACHE, exist_ok=True); print(path)"
    )
    environment = {**os.environ, **variables.variables, "PYTHONPATH": ""}
    environment.pop("PYTHONPATH")
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(local))
    assert _files(layout.root) - before == set()


def test_old_modelscope_writes_its_ast_index_to_local_disk(
    layout: VolumeLayout, tmp_path: Path, old_clients: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """modelscope 1.10 (speaker-diarization's) rewrites ``<MODELSCOPE_CACHE>/ast_indexer`` on a fresh worker."""
    local = tmp_path / "local-disk"
    monkeypatch.setenv("VOLUME_CLI_LOCAL_CACHE", str(local))
    layout.modelscope_cache.mkdir(parents=True)
    variables = consumer_env(layout=layout, project="plain", python_version=PY, mount=None).variables
    variables.pop("PYTHONPATH")
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "PYTHONPATH": str(old_clients)}
    code = "from modelscope.utils.ast_utils import load_index; load_index()"
    done = subprocess.run(
        [sys.executable, "-c", code], env={**environment, **variables}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert {name for name in _files(layout.root) if name.startswith("models")} == {"models", "models/modelscope"}
    assert (local / "modelscope" / "ast_indexer").is_file()


def test_a_worker_that_only_set_pythonpath_still_keeps_caches_and_bytecode_local(
    layout: VolumeLayout, tmp_path: Path, index: IndexServer, isolated_uv: Path
) -> None:
    _plain_project(layout, tmp_path, index, isolated_uv)
    boot = consumer_env(layout=layout, project="plain", python_version=PY, mount=None).variables["PYTHONPATH"]
    base = {key: value for key, value in os.environ.items() if key not in LOCAL_NAMES and key != "PYTHONPATH"}
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    code = "import os, sys, delta; print(os.environ['NUMBA_CACHE_DIR'], sys.dont_write_bytecode)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "PYTHONPATH": boot, "VOLUME_CLI_LOCAL_CACHE": str(tmp_path / "mine")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "mine" / "numba"), "True"]


def test_every_copy_of_the_local_cache_list_agrees() -> None:
    from volume_cli import worker_boot
    from volume_cli.runtime import LOCAL_CACHE_DEFAULT, LOCAL_CACHES, TOKEN_PATHS

    assert worker_boot.LOCAL_CACHES == LOCAL_CACHES and worker_boot.LOCAL_CACHE_DEFAULT == LOCAL_CACHE_DEFAULT
    assert worker_boot.TOKEN_PATHS == TOKEN_PATHS
    start = (Path(__file__).resolve().parents[1] / "examples" / "start.sh").read_text()
    for name, relative in LOCAL_CACHES.items():
        assert f'export {name}="${{{name}:-$LOCAL_CACHE/{relative}}}"' in start


def test_a_failing_after_models_hook_fails_the_models_step_not_the_whole_setup(
    layout: VolumeLayout, tmp_path: Path, index: IndexServer, isolated_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volume_cli.flows.setup import run_setup

    folder = tmp_path / "plugins" / "after"
    folder.mkdir(parents=True)
    (folder / "project.py").write_text(
        "from volume_cli import Project\n\n"
        "class After(Project):\n"
        "    name = 'after'\n"
        f"    python_version = {PY!r}\n\n"
        "    def after_models(self, context):\n"
        "        raise ValueError('no weights converted')\n"
    )
    (folder / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [delta]\n")
    monkeypatch.setenv("VOLUME_CLI_UV_CACHE", str(isolated_uv))
    result = run_setup(layout=layout, project=load_project_folder(folder), mirror=index.url, progress=NullProgress())
    deps, models = result.steps
    assert deps.ok and not models.ok and not result.ok
    assert models.error is not None and "after_models hook failed: ValueError: no weights converted" in models.error


def test_a_hub_login_token_lives_in_the_home_folder_never_on_the_volume(layout: VolumeLayout, tmp_path: Path) -> None:
    """With HF_HOME on the volume, a login stored the token there: readable by every worker and pod."""
    home = tmp_path / "home"
    (home / ".cache" / "huggingface").mkdir(parents=True)
    (home / ".cache" / "huggingface" / "token").write_text("hf_fromhome")
    variables = consumer_env(layout=layout, project="plain", python_version=PY, mount=None).variables
    variables.pop("PYTHONPATH")
    code = (
        "from huggingface_hub import constants, get_token;"
        "print(get_token(), constants.HF_TOKEN_PATH, constants.HF_STORED_TOKENS_PATH)"
    )
    environment = {"PATH": os.environ["PATH"], "HOME": str(home), **variables}
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    token, path, stored = done.stdout.split()
    assert token == "hf_fromhome"
    assert not _on_volume(path, layout.root) and not _on_volume(stored, layout.root)


def test_a_model_added_to_the_project_but_not_downloaded_is_not_ok_where_the_definition_is_known(
    layout: VolumeLayout, modelled: Path, index: IndexServer, isolated_uv: Path, cli: Any
) -> None:
    _set_up(layout, modelled, index, isolated_uv)
    common = ("--project", "modelled", "--root", str(layout.root), "--projects-dir", str(modelled.parent))
    assert cli("doctor", *common).exit_code == 0
    assert "HF_HUB_OFFLINE" in cli("env", *common).stdout
    # a second model in the project: the record on the volume is for the old list
    (modelled / "more").mkdir()
    (modelled / "more" / "w.bin").write_bytes(b"1")
    grown = {
        **MODEL_PROJECT,
        "models": [*MODEL_PROJECT["models"], {"source": "local", "path": "more", "dest": "m/more"}],
    }
    (modelled / "project.yaml").write_text(yaml.safe_dump(grown))
    doctor = cli("doctor", *common)
    assert doctor.exit_code != 0 and "model list changed" in doctor.stderr
    assert "next: volume-cli models download --project modelled" in doctor.stderr
    env = cli("env", *common)
    assert env.exit_code == 0 and "HF_HUB_OFFLINE" not in env.stdout and "warning: models" in env.stderr


def test_doctor_finds_generation_links_that_lead_nowhere(
    layout: VolumeLayout, tmp_path: Path, index: IndexServer, isolated_uv: Path, cli: Any
) -> None:
    _plain_project(layout, tmp_path, index, isolated_uv)
    common = ("--project", "plain", "--root", str(layout.root), "--projects-dir", str(tmp_path / "projects"))
    assert cli("doctor", *common).exit_code == 0
    (entry,) = [path for path in layout.store_dir.iterdir() if path.name.startswith("delta-")]
    os.rename(entry, entry.with_name("gone"))  # what a racing gc or a manual rm leaves
    doctor = cli("doctor", *common)
    assert doctor.exit_code != 0 and "leads to a missing file" in doctor.stderr
    assert "volume-cli deps install --project plain --force" in doctor.stderr
