"""uv installs into a staging folder on the pod's local disk (``VOLUME_CLI_SCRATCH``), never on the volume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deps.helpers import PY, import_values, run_install_subprocess
from tests.helpers import Projects
from tests.netvol.fixture import netvol, netvol_options  # noqa: F401 (fixtures)
from tests.netvol.mount import NetVol
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.deps import install
from volume_cli.deps.faults import CRASH_ENV
from volume_cli.deps.scratch import SCRATCH_ENV, cleanup_stale_scratch, new_local_staging, scratch_dir
from volume_cli.errors import ScratchError
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_uv_stages_in_the_scratch_folder_and_a_killed_runs_folder_is_removed_by_the_next(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    isolated_uv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = tmp_path / "scratch"
    monkeypatch.setenv(SCRATCH_ENV, str(scratch))
    project = projects.make("demo", {"m": {"packages": ["gamma"]}})
    killed = run_install_subprocess(
        layout, project.folder, mirror=index.url, cache=isolated_uv, env={CRASH_ENV: "staged"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    (left,) = os.listdir(scratch)  # uv's install went to local disk...
    assert list((scratch / left / "target").glob("gamma*"))
    assert not (layout.deps_dir / ".staging").exists() or not os.listdir(layout.deps_dir / ".staging")  # ...not here

    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=NullProgress())
    assert os.listdir(scratch) == []  # the killed run's folder and this run's own are gone
    assert import_values(layout.deps_path("demo", PY), {"v": "gamma.VALUE"}) == {"v": "gamma"}


def test_the_default_scratch_is_beside_uv_cache(layout: VolumeLayout, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "uv"
    assert scratch_dir(layout, cache) == tmp_path / "cache" / "uv-scratch"


def test_a_uv_cache_on_the_volume_does_not_put_scratch_there(layout: VolumeLayout, tmp_path: Path) -> None:
    chosen = scratch_dir(layout, layout.root / "uv-cache")
    assert not str(chosen).startswith(str(layout.root)) and chosen.is_dir()


@pytest.mark.parametrize("where", ["volume", "file", "link"])
def test_an_unusable_scratch_fails_clearly_naming_the_variable(
    where: str,
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    isolated_uv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = projects.make("demo", {"m": {"packages": ["gamma"]}})
    first = install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=NullProgress())
    bad = {"volume": layout.root / "scratch", "file": tmp_path / "a-file", "link": tmp_path / "a-link"}[where]
    if where == "file":
        bad.write_text("")
    if where == "link":
        (tmp_path / "elsewhere").mkdir()
        bad.symlink_to(tmp_path / "elsewhere")
    monkeypatch.setenv(SCRATCH_ENV, str(bad))
    changed = projects.make("demo", {"m": {"packages": ["gamma", "epsilon"]}})
    with pytest.raises(ScratchError) as raised:
        install(layout=layout, project=changed, mirror=index.url, cache_dir=isolated_uv, progress=NullProgress())
    assert SCRATCH_ENV in str(raised.value) and raised.value.hint and SCRATCH_ENV in raised.value.hint
    assert os.readlink(layout.deps_path("demo", PY)).endswith(str(first.generation))
    assert not (layout.root / "scratch").exists()


def test_cleanup_keeps_a_live_runs_folder_and_removes_a_dead_ones(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    mine = new_local_staging(tmp_path, VolumeLayout(volume))
    pid = int(mine.root.name.split("-")[1])
    dead = tmp_path / mine.root.name.replace(f"-{pid}-", f"-{_dead_pid()}-", 1)
    dead.mkdir()
    assert cleanup_stale_scratch(tmp_path) == 1
    assert mine.root.is_dir() and not dead.exists()


TOOL_FILES = {
    "tooly/__init__.py": "def main():\n    print('tooly says hi')\n",
    "tooly-1.0.dist-info/entry_points.txt": "[console_scripts]\ntooly = tooly:main\n",
    "tooly-1.0.data/scripts/tooly-raw": "#!python\nprint('raw script')\n",
}


def test_staged_files_are_hard_links_into_uvs_cache_and_the_cache_stays_intact(
    netvol: NetVol,  # noqa: F811
    projects: Projects,
    tmp_path: Path,
    isolated_uv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout = VolumeLayout(netvol.path / "volume")  # another disk than the scratch folder, as on a pod
    layout.root.mkdir()
    scratch = tmp_path / "scratch"
    monkeypatch.setenv(SCRATCH_ENV, str(scratch))
    wheel = build_wheel(tmp_path / "wheels-tools", "tooly", "1.0", files=TOOL_FILES)
    project = projects.make("tools", {"main": {"packages": ["tooly==1.0"]}})
    with IndexServer(wheel.parent) as index:
        killed = run_install_subprocess(
            layout, project.folder, mirror=index.url, cache=isolated_uv, env={CRASH_ENV: "staged"}
        )
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        (staged,) = scratch.glob("*/target/tooly/__init__.py")
        assert staged.stat().st_nlink > 1, "uv copied instead of linking from its cache"
        # Bytecode is compiled later, entry by entry (tests/test_compile_publish_overlap.py checks it there).
        assert not (staged.parent / "__pycache__").exists()
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=NullProgress())
    with zipfile.ZipFile(wheel) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    checked = 0
    for path in isolated_uv.rglob("*"):
        relative = next((name for name in members if path.as_posix().endswith("/" + name)), None)
        if relative is not None and path.is_file():
            assert path.read_bytes() == members[relative], f"{path} in uv's cache was changed"
            checked += 1
    assert checked >= 2
    assert not list(isolated_uv.rglob("*.pyc"))


def test_a_volume_on_the_scratch_disk_gets_uvs_copies_renamed_not_links_into_its_cache(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"m": {"packages": ["gamma"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=NullProgress())
    (stored,) = layout.store_dir.glob("gamma-*/gamma.py")
    assert stored.stat().st_nlink == 1  # damaging the store must never damage uv's cache
