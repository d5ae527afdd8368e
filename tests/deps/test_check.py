"""``check``, ``deps_status``, ``store_usage`` and ``list_packages``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import Projects
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.deps import check, deps_status, install, list_packages, lock_project, rollback, store_usage
from volume_cli.deps.check import top_level_modules
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import PY


def test_modules_come_from_record_not_from_the_package_name() -> None:
    record = [
        "sklearn/__init__.py",
        "sklearn/_core.cpython-311-x86_64-linux-gnu.so",
        "scikit_learn-1.5.dist-info/RECORD",
        "scikit_learn.libs/libgomp.so.1",
        "yaml/__init__.py",
        "_yaml.cpython-311-x86_64-linux-gnu.so",
        "google/protobuf/__init__.py",
        "google/_upb/_message.abi3.so",
        "bin/umap",
        "tests/test_x.py",
        "six.py",
        "__pycache__/six.cpython-311.pyc",
    ]
    assert top_level_modules(record) == ["_yaml", "google._upb._message", "google.protobuf", "six", "sklearn", "yaml"]
    assert top_level_modules(record, ["sklearn", "nothing_real"]) == ["sklearn"]


def _odd_wheels(folder: Path) -> None:
    # distribution names that are not module names, like scikit-learn → sklearn
    build_wheel(folder, "py-widgets", "1.0", files={"widgetry/__init__.py": "OK = True\n"}, top_level=["widgetry"])
    build_wheel(folder, "umap-thing", "1.0", files={"umapx/__init__.py": "OK = True\n", "umapx/core.py": "X = 1\n"})
    build_wheel(folder, "broken-dist", "1.0", files={"brokenmod/__init__.py": "import does_not_exist\n"})


def test_check_is_clean_after_install_and_finds_every_kind_of_problem(
    layout: VolumeLayout,
    projects: Projects,
    wheels: Path,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
) -> None:
    _odd_wheels(wheels)
    project = projects.make("demo", {"main": {"packages": ["alpha==1.0", "py-widgets", "umap-thing"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    report = check(layout=layout, project=project, progress=progress)
    assert report.ok, report
    assert report.distributions_checked == 4 and report.modules_imported == 4 and report.interpreter
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True

    generation = layout.deps_path("demo", PY).resolve()
    # a file edited in place in the store
    alpha_init = generation / "alpha" / "__init__.py"
    alpha_init.resolve().write_text("VERSION = 'tampered'\n")
    # a distribution that vanished from the generation, and one nobody locked
    os.unlink(generation / "umap_thing-1.0.dist-info")
    os.symlink(os.readlink(generation / "py_widgets-1.0.dist-info"), generation / "stray-9.dist-info")
    report = check(layout=layout, project=project, progress=progress, imports=False)
    assert not report.ok
    assert [(p.distribution, p.path, p.problem) for p in report.file_problems] == [
        ("alpha", "alpha/__init__.py", "changed")
    ]
    assert report.missing == ("umap-thing",)
    assert report.modules_imported == 0


def test_check_reports_modules_that_fail_to_import(
    layout: VolumeLayout,
    projects: Projects,
    wheels: Path,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
) -> None:
    _odd_wheels(wheels)
    project = projects.make("demo", {"main": {"packages": ["broken-dist", "py-widgets"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    report = check(layout=layout, project=project, progress=progress)
    assert not report.ok
    assert [(f.distribution, f.module) for f in report.import_failures] == [("broken-dist", "brokenmod")]
    assert "does_not_exist" in report.import_failures[0].error


def test_check_without_an_install_is_not_ok(layout: VolumeLayout, projects: Projects, progress: NullProgress) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha"]}})
    report = check(layout=layout, project=project, progress=progress)
    assert not report.ok and report.problems


def test_status_reports_drift_from_records_only(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"m": {"packages": ["alpha==1.0"]}})
    empty = deps_status(layout=layout, project=project, mirror=index.url)
    assert not empty.installed and empty.config_changed_since_lock and not empty.in_sync

    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    status = deps_status(layout=layout, project=project, mirror=index.url)
    assert status.in_sync and status.locked_packages == 2 and status.installed_packages == 2
    assert status.lock_hash == status.generation_lock_hash and status.writer is None

    changed = projects.make("demo", {"m": {"packages": ["alpha==2.0"]}})
    drifted = deps_status(layout=layout, project=changed, mirror=index.url)
    assert drifted.config_changed_since_lock and not drifted.generation_differs_from_lock

    lock_project(layout=layout, project=changed, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    locked = deps_status(layout=layout, project=changed, mirror=index.url)
    assert not locked.config_changed_since_lock and locked.generation_differs_from_lock

    install(layout=layout, project=changed, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    rollback(layout=layout, project=changed, progress=progress)
    rolled = deps_status(layout=layout, project=changed, mirror=index.url)
    assert rolled.generation_differs_from_lock and len(rolled.generations_kept) == 2
    assert json.loads(json.dumps(rolled.to_dict()))["in_sync"] is False


def test_status_of_twenty_projects_reads_each_one(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    definitions = [projects.make(f"p{number}", {"m": {"packages": ["delta"]}}) for number in range(20)]
    for definition in definitions[:3]:
        install(layout=layout, project=definition, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    statuses = [deps_status(layout=layout, project=definition, mirror=index.url) for definition in definitions]
    usage = store_usage(layout=layout)  # its speed: bench/startup_bench.py (CI asserts no timing)
    assert [status.installed for status in statuses].count(True) == 3
    assert usage.entries == 1 and usage.shared_entries == 1 and usage.saved_bytes == 2 * usage.shared_bytes


def test_list_packages_compares_config_lock_and_disk(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    install(
        layout=layout,
        project=projects.make("demo", {"m": {"packages": ["alpha==1.0", "delta"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    project = projects.make("demo", {"m": {"packages": ["alpha==2.0"]}, "extra": {"packages": ["epsilon"]}})
    lock_project(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    rows = {
        row.name: (row.group, row.locked_version, row.installed_version, row.status)
        for row in list_packages(layout=layout, project=project, mirror=index.url)
    }
    assert rows == {
        "alpha": ("m", "2.0", "1.0", "differs"),
        "beta": (None, "1.5", "1.5", "ok"),
        "delta": (None, None, "1.0", "extra"),
        "epsilon": ("extra", "3.0", None, "not installed"),
    }


def test_import_check_does_not_fall_back_to_the_running_environment(
    layout: VolumeLayout,
    projects: Projects,
    wheels: Path,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
) -> None:
    # The checking interpreter has PyYAML installed; a `yaml` module gone from the generation must
    # still fail the check instead of being imported from the interpreter's own site-packages.
    build_wheel(wheels, "yaml-shadow", "1.0", files={"yaml/__init__.py": "SHADOW = True\n"}, top_level=["yaml"])
    project = projects.make("shadow", {"main": {"packages": ["yaml-shadow"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert check(layout=layout, project=project, progress=progress).ok
    os.unlink(layout.deps_path("shadow", PY).resolve() / "yaml")
    report = check(layout=layout, project=project, progress=progress)
    assert not report.ok
    assert [(failure.distribution, failure.module) for failure in report.import_failures] == [("yaml-shadow", "yaml")]
