"""``deps install --force`` repairs only damaged store entries, under the same names; gc can drop previous generations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import Projects
from tests.wheelfactory import IndexServer
from volume_cli.deps import check, gc, install
from volume_cli.deps.check import next_step
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import PY


def _entry(layout: VolumeLayout, prefix: str) -> Path:
    [found] = [path for path in layout.store_dir.iterdir() if path.name.startswith(prefix)]
    return found


def _store_size(layout: VolumeLayout) -> int:
    return sum(path.stat().st_size for path in layout.store_dir.rglob("*") if path.is_file())


def test_force_repairs_damaged_files_in_place_and_leaves_healthy_entries_alone(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha==1.0", "gamma"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    entries = sorted(os.listdir(layout.store_dir))
    size = _store_size(layout)
    alpha = _entry(layout, "alpha-1.0-")
    good = (alpha / "alpha" / "__init__.py").read_bytes()
    (alpha / "alpha" / "__init__.py").write_text("VERSION = 'tampered'\n")
    (_entry(layout, "gamma-") / "gamma.py").unlink()
    delta_mtime = (_entry(layout, "delta-") / "delta" / "__init__.py").stat().st_mtime_ns
    report = check(layout=layout, project=project, progress=progress, imports=False)
    assert {(p.distribution, p.problem) for p in report.file_problems} == {("alpha", "changed"), ("gamma", "missing")}
    assert "--force" in next_step(report)

    result = install(
        layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress, force=True
    )

    assert sorted(os.listdir(layout.store_dir)) == entries  # same names: nothing rebuilt beside the old ones
    assert (alpha / "alpha" / "__init__.py").read_bytes() == good
    assert _store_size(layout) <= size + 64  # only the manifest may grow
    assert (_entry(layout, "delta-") / "delta" / "__init__.py").stat().st_mtime_ns == delta_mtime
    assert result.bytes_added == 0 and result.repaired_count == 2
    assert check(layout=layout, project=project, progress=progress).ok


def test_force_on_a_healthy_install_adds_nothing_and_gc_has_nothing_to_free(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha==1.0"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    entries = sorted(os.listdir(layout.store_dir))
    result = install(
        layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress, force=True
    )
    assert sorted(os.listdir(layout.store_dir)) == entries
    assert result.installed_count == 0 and result.repaired_count == 0 and result.bytes_added == 0
    assert check(layout=layout, project=project, progress=progress).ok


def test_force_rebuilds_an_entry_it_cannot_verify_under_a_new_name(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha==1.0"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    alpha = _entry(layout, "alpha-1.0-")
    (alpha / "alpha-1.0.dist-info" / "RECORD").unlink()  # nothing to verify against
    result = install(
        layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress, force=True
    )
    assert result.installed_count == 1
    names = sorted(path.name for path in layout.store_dir.iterdir() if path.name.startswith("alpha-"))
    assert len(names) == 2 and alpha.name in names  # the old one stays for the previous generation
    assert check(layout=layout, project=project, progress=progress).ok


def test_force_repairs_a_generation_whose_link_was_deleted(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha==1.0"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    os.unlink(layout.deps_path("demo", PY) / "alpha")
    report = check(layout=layout, project=project, progress=progress)
    assert not report.ok and "--force" in next_step(report)
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress, force=True)
    assert check(layout=layout, project=project, progress=progress).ok


def test_gc_drop_previous_frees_the_previous_generation_and_its_entries(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    old = projects.make("demo", {"main": {"packages": ["alpha==1.0"]}})
    install(layout=layout, project=old, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    new = projects.make("demo", {"main": {"packages": ["alpha==2.0"]}})
    install(layout=layout, project=new, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    kept = gc(layout=layout, grace_seconds=0, dry_run=False, progress=progress)
    assert not kept.generations_removed and _entry(layout, "alpha-1.0-").is_dir()

    dropped = gc(layout=layout, grace_seconds=0, dry_run=False, progress=progress, drop_previous=True)
    assert len(dropped.generations_removed) == 1
    assert [name.split("-")[0] for name in dropped.entries_removed] == ["alpha"]
    assert not [path for path in layout.store_dir.iterdir() if path.name.startswith("alpha-1.0-")]
    assert check(layout=layout, project=new, progress=progress).ok


def test_next_step_names_the_fix_that_works(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha==1.0"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    shutil.rmtree(layout.deps_path("demo", PY).resolve())  # the current generation is gone
    report = check(layout=layout, project=project, progress=progress)
    assert not report.ok and "deps install --project demo" in next_step(report)


def test_an_entry_whose_manifest_is_gone_is_built_again_without_force(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    first = projects.make("one", {"main": {"packages": ["alpha==1.0"]}})
    install(layout=layout, project=first, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    alpha = _entry(layout, "alpha-1.0-")
    (alpha / ".volume-cli-entry.json").write_text("{not json")
    second = projects.make("two", {"main": {"packages": ["alpha==1.0"]}})
    result = install(layout=layout, project=second, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert result.installed_count == 1 and alpha.is_dir()  # the first project's generation still links it
    assert check(layout=layout, project=second, progress=progress).ok


_FORCE_DRIVER = """
import sys
from pathlib import Path
from volume_cli.deps import install
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.project.discovery import load_project_folder
root, folder, mirror, cache = sys.argv[1:5]
install(layout=VolumeLayout(Path(root)), project=load_project_folder(Path(folder)), mirror=mirror,
        cache_dir=Path(cache), progress=NullProgress(), force=True)
"""


def test_a_repair_killed_halfway_keeps_the_generation_and_the_next_force_finishes_it(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha==1.0"]}})
    first = install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    alpha = _entry(layout, "alpha-1.0-")
    metadata = alpha / "alpha-1.0.dist-info" / "METADATA"
    good = {path: path.read_bytes() for path in (alpha / "alpha" / "__init__.py", metadata)}
    for path in good:
        path.write_bytes(path.read_bytes() + b"# damage\n")
    entries = sorted(os.listdir(layout.store_dir))
    killed = subprocess.run(
        [sys.executable, "-c", _FORCE_DRIVER, str(layout.root), str(project.folder), index.url, str(isolated_uv)],
        env=dict(os.environ, VOLUME_CLI_TEST_CRASH_AT="first-file-repaired"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    assert [path.read_bytes() == data for path, data in good.items()].count(True) == 1  # one file replaced
    assert os.readlink(layout.deps_path("demo", PY)).endswith(str(first.generation))  # still the old generation
    again = install(
        layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress, force=True
    )
    assert again.repaired_count == 1 and sorted(os.listdir(layout.store_dir)) == entries
    assert all(path.read_bytes() == data for path, data in good.items())
    assert check(layout=layout, project=project, progress=progress).ok


def test_an_entry_built_again_under_a_new_name_is_reused_not_built_a_third_time(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    first = projects.make("one", {"main": {"packages": ["alpha==1.0"]}})
    install(layout=layout, project=first, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    (_entry(layout, "alpha-1.0-") / ".volume-cli-entry.json").unlink()
    install(
        layout=layout,
        project=projects.make("two", {"main": {"packages": ["alpha==1.0"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    assert len([p for p in layout.store_dir.iterdir() if p.name.startswith("alpha-")]) == 2
    third = projects.make("three", {"main": {"packages": ["alpha==1.0"]}})
    result = install(layout=layout, project=third, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert result.installed_count == 0  # alpha's rebuilt entry is linked, not built a third time
    forced = install(
        layout=layout, project=third, mirror=index.url, cache_dir=isolated_uv, progress=progress, force=True
    )
    assert forced.installed_count == 0
    assert len([p for p in layout.store_dir.iterdir() if p.name.startswith("alpha-")]) == 2
    assert check(layout=layout, project=third, progress=progress).ok
