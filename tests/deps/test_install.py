"""Installing, changing and rolling back a project's dependencies, with real uv and real wheels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Projects
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.deps import install, list_packages, lock_project, plan_install, rollback
from volume_cli.deps.documents import GenerationRecord, LockInfo, generation_record_path, lock_info_path
from volume_cli.errors import InstallError, ResolutionError
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.store.documents import read_document
from volume_cli.store.state import read_project_state

from .helpers import PY, REPO, import_values, tree_snapshot


def _names(changes: tuple[object, ...]) -> list[str]:
    return sorted(change.name for change in changes)  # type: ignore[attr-defined]


def _entry_of(layout: VolumeLayout, project: str, dist_info: str) -> str:
    return Path(os.readlink(layout.deps_path(project, PY) / dist_info)).parent.name


def test_first_install_links_a_generation_that_imports(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha==1.0", "gamma"]}})
    result = install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)

    assert not result.noop
    assert _names(result.plan.add) == ["alpha", "beta", "delta", "gamma"]
    assert result.installed_count == 4 and result.bytes_added > 0
    deps_path = layout.deps_path("demo", PY)
    assert deps_path.is_symlink() and not os.path.isabs(os.readlink(deps_path))
    generation = layout.generations_dir("demo", PY) / str(result.generation)
    assert deps_path.resolve() == generation.resolve()
    # top-level items are relative links into the store
    alpha = generation / "alpha"
    assert alpha.is_symlink() and not os.path.isabs(os.readlink(alpha))
    assert alpha.resolve().parent.parent == layout.store_dir.resolve()
    values = import_values(deps_path, {"alpha": "alpha.VERSION", "beta": "beta.VERSION", "gamma": "gamma.VALUE"})
    assert values == {"alpha": "1.0", "beta": "1.5", "gamma": "gamma"}
    # bytecode was compiled for the project's Python
    assert any((alpha / "__pycache__").glob(f"__init__.cpython-{PY.replace('.', '')}.pyc"))

    state = read_project_state(layout, "demo")
    assert state is not None and state.deps is not None
    assert state.deps.generation == result.generation and state.deps.package_count == 4
    assert state.deps.config_hash == project.config_hash(mirror=index.url)
    record = read_document(generation_record_path(layout, "demo", str(result.generation)), GenerationRecord)
    assert record is not None and sorted(entry.name for entry in record.entries) == ["alpha", "beta", "delta", "gamma"]
    assert (layout.project_state_dir("demo") / "pylock.toml").is_file()
    assert not list((layout.deps_dir / ".staging").iterdir())


def test_add_upgrade_downgrade_remove_change_only_what_differs(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    def apply(packages: list[str]) -> object:
        project = projects.make("demo", {"main": {"packages": packages}})
        return install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)

    apply(["alpha==1.0", "epsilon==3.0", "beta==1.0"])
    beta_entry = _entry_of(layout, "demo", "beta-1.0.dist-info")

    second = apply(["alpha==2.0", "epsilon==1.0", "beta==1.0", "gamma"])
    plan = second.plan  # type: ignore[attr-defined]
    assert _names(plan.add) == ["delta", "gamma"]
    assert _names(plan.upgrade) == ["alpha"] and _names(plan.downgrade) == ["epsilon"]
    assert _names(plan.unchanged) == ["beta"] and not plan.remove
    assert second.installed_count == 4  # type: ignore[attr-defined]
    assert _entry_of(layout, "demo", "beta-1.0.dist-info") == beta_entry  # the unchanged entry is shared
    path = layout.deps_path("demo", PY)
    assert import_values(path, {"a": "alpha.VERSION", "e": "epsilon.VERSION", "g": "gamma.VALUE"}) == {
        "a": "2.0",
        "e": "1.0",
        "g": "gamma",
    }

    third = apply(["epsilon==1.0", "gamma"])  # alpha goes, and beta with it: nothing needs it now
    assert _names(third.plan.remove) == ["alpha", "beta"]  # type: ignore[attr-defined]
    assert third.installed_count == 0  # type: ignore[attr-defined]
    listing = sorted(name for name in os.listdir(path) if not name.startswith("__"))
    assert listing == [
        "delta",
        "delta-1.0.dist-info",
        "epsilon",
        "epsilon-1.0.dist-info",
        "gamma-1.0.dist-info",
        "gamma.py",
    ]

    fourth = apply(["epsilon==1.0", "gamma", "alpha==2.0", "beta==1.0"])  # back: entries are in the store already
    assert fourth.installed_count == 0 and fourth.reused_count == 2  # type: ignore[attr-defined]


def test_unpinned_requirements_stay_locked_until_upgrade(
    layout: VolumeLayout,
    projects: Projects,
    wheels: Path,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
) -> None:
    project = projects.make("demo", {"main": {"packages": ["epsilon"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    build_wheel(wheels, "epsilon", "4.0")

    assert install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress).noop
    # a config change re-resolves but keeps every package where it was
    changed = projects.make("demo", {"main": {"packages": ["epsilon", "delta"]}})
    result = install(layout=layout, project=changed, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert _names(result.plan.add) == ["delta"] and _names(result.plan.unchanged) == ["epsilon"]
    # another pod (fresh uv cache) installing the same project gets the locked version, not the newest
    other_root = layout.root.parent / "other-volume"
    other_root.mkdir()
    lock_text = (layout.project_state_dir("demo") / "pylock.toml").read_text()
    assert 'name = "epsilon"\nversion = "3.0"' in lock_text

    upgraded = install(
        layout=layout, project=changed, mirror=index.url, cache_dir=isolated_uv, progress=progress, upgrade=True
    )
    assert [(c.name, c.locked_version) for c in upgraded.plan.upgrade] == [("epsilon", "4.0")]


def test_same_config_and_indexes_give_the_same_lock(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, tmp_path: Path
) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha", "gamma"]}})
    first = lock_project(layout=layout, project=project, mirror=index.url, cache_dir=tmp_path / "c1", progress=progress)
    other = VolumeLayout(tmp_path / "elsewhere")
    other.root.mkdir()
    exported = tmp_path / "export" / "pylock.toml"
    second = lock_project(
        layout=other, project=project, mirror=index.url, cache_dir=tmp_path / "c2", progress=progress, output=exported
    )
    assert first.lock_hash == second.lock_hash and first.changed and second.changed
    assert exported.read_bytes() == first.path.read_bytes()
    text = exported.read_text()
    assert "lock-version" in text and "[tool.volume-cli]" in text and str(tmp_path) not in text
    again = lock_project(layout=layout, project=project, mirror=index.url, cache_dir=tmp_path / "c1", progress=progress)
    assert not again.changed


def test_moving_a_package_between_groups_installs_nothing(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    first = projects.make("demo", {"one": {"packages": ["alpha==1.0"]}, "two": {"packages": ["delta"]}})
    installed = install(layout=layout, project=first, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    moved = projects.make("demo", {"one": {"packages": ["delta"]}, "two": {"packages": ["alpha==1.0"]}})
    assert moved.config_hash(mirror=index.url) != first.config_hash(mirror=index.url)

    result = install(layout=layout, project=moved, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert result.noop and not result.plan.has_changes and result.generation == installed.generation
    # the records now say this config built the generation, so the next run takes the fast path
    again = install(layout=layout, project=moved, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert again.noop and again.plan.lock_hash == result.lock_hash
    rows = {row.name: row for row in list_packages(layout=layout, project=moved, mirror=index.url)}
    assert rows["alpha"].group == "two" and rows["alpha"].status == "ok"
    assert rows["beta"].group is None and rows["beta"].installed_version == "1.5"


def test_no_deps_group_is_locked_without_its_dependencies(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make(
        "demo", {"plain": {"packages": ["delta"]}, "bare": {"packages": ["alpha==2.0"], "no_deps": True}}
    )
    result = install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert _names(result.plan.add) == ["alpha", "delta"]
    info = read_document(lock_info_path(layout, "demo"), LockInfo)
    assert info is not None and sorted(info.by_name()) == ["alpha", "delta"]
    assert import_values(layout.deps_path("demo", PY), {"a": "alpha.VERSION"}) == {"a": "2.0"}


def test_a_group_index_pins_its_packages_in_one_joint_resolution(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    tmp_path: Path,
    progress: NullProgress,
    isolated_uv: Path,
) -> None:
    # Both indexes serve shared==1.0, with different content; the group's index must win.
    build_wheel(index.folder, "shared", "1.0", build_tag="main", requires=["beta==1.0"])
    other_folder = tmp_path / "wheels-other"
    build_wheel(other_folder, "shared", "1.0", build_tag="other", requires=["beta==1.0"])
    with IndexServer(other_folder) as other:
        pinned = projects.make(
            "demo",
            {"cuda": {"packages": ["shared"], "index_url": other.url}, "rest": {"packages": ["alpha"]}},
        )
        install(layout=layout, project=pinned, mirror=index.url, cache_dir=isolated_uv, progress=progress)
        path = layout.deps_path("demo", PY)
        # shared's dependency beta comes from the default index, jointly resolved with alpha's beta>=1
        assert import_values(path, {"s": "shared.BUILD", "b": "beta.VERSION"}) == {"s": "other", "b": "1.0"}
        assert any(request.startswith("/files/shared") for request in other.requests)

        unpinned = projects.make("demo", {"cuda": {"packages": ["shared"]}, "rest": {"packages": ["alpha"]}})
        result = install(layout=layout, project=unpinned, mirror=index.url, cache_dir=isolated_uv, progress=progress)
        assert _names(result.plan.reinstall) == ["shared"]  # same version, other build
        assert import_values(path, {"s": "shared.BUILD"}) == {"s": "main"}


def test_force_reinstalls_into_new_entries(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha==1.0"]}})
    first = install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    old_entry = _entry_of(layout, "demo", "alpha-1.0.dist-info")
    forced = install(
        layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress, force=True
    )
    assert not forced.noop and forced.generation != first.generation
    # healthy entries are verified and kept: a forced install rebuilds nothing (tests/deps/test_force_repair.py)
    assert _names(forced.plan.reinstall) == ["alpha", "beta"] and forced.installed_count == 0
    assert _entry_of(layout, "demo", "alpha-1.0.dist-info") == old_entry
    assert import_values(layout.deps_path("demo", PY), {"a": "alpha.VERSION"}) == {"a": "1.0"}
    # the forced build counts as the locked one: the next install is a no-op
    assert install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress).noop


def test_rollback_switches_to_the_previous_generation_and_back(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    one = install(
        layout=layout,
        project=projects.make("demo", {"m": {"packages": ["alpha==1.0"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    project = projects.make("demo", {"m": {"packages": ["alpha==2.0"]}})
    two = install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    path = layout.deps_path("demo", PY)

    dry = rollback(layout=layout, project=project, progress=progress, dry_run=True)
    assert dry.to_generation == one.generation and import_values(path, {"a": "alpha.VERSION"}) == {"a": "2.0"}
    back = rollback(layout=layout, project=project, progress=progress)
    assert (back.from_generation, back.to_generation) == (two.generation, one.generation)
    assert import_values(path, {"a": "alpha.VERSION"}) == {"a": "1.0"}
    plan = plan_install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert [(c.name, c.installed_version, c.locked_version) for c in plan.upgrade] == [("alpha", "1.0", "2.0")]

    rollback(layout=layout, project=project, progress=progress)
    assert import_values(path, {"a": "alpha.VERSION"}) == {"a": "2.0"}


def test_rollback_without_a_previous_generation_fails_clearly(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"m": {"packages": ["delta"]}})
    with pytest.raises(InstallError, match="no installed generation"):
        rollback(layout=layout, project=project, progress=progress)
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    with pytest.raises(InstallError, match="no previous generation"):
        rollback(layout=layout, project=project, progress=progress)


def test_dry_run_returns_the_plan_and_changes_nothing(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    install(
        layout=layout,
        project=projects.make("demo", {"m": {"packages": ["alpha==1.0"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    before = tree_snapshot(layout.root)
    project = projects.make("demo", {"m": {"packages": ["alpha==2.0", "delta"]}})
    result = install(
        layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress, dry_run=True
    )
    assert result.dry_run and not result.noop
    data = json.loads(json.dumps(result.to_dict()))
    assert [change["name"] for change in data["plan"]["add"]] == ["delta"]
    assert [change["name"] for change in data["plan"]["upgrade"]] == ["alpha"]
    assert tree_snapshot(layout.root) == before


def test_noop_needs_no_network(
    layout: VolumeLayout, projects: Projects, wheels: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    server = IndexServer(wheels).start()
    project = projects.make("demo", {"m": {"packages": ["alpha", "gamma"]}})
    first = install(layout=layout, project=project, mirror=server.url, cache_dir=isolated_uv, progress=progress)
    server.stop()
    requests = len(server.requests)

    # Its speed is measured by bench/netvol_bench.py and held by an operation budget in test_netvol_budgets.py.
    result = install(layout=layout, project=project, mirror=server.url, cache_dir=isolated_uv, progress=NullProgress())
    assert result.noop and result.generation == first.generation and len(server.requests) == requests

    # the same through a fresh process, start-up included
    code = (
        "import sys; from pathlib import Path; from volume_cli.deps import install; "
        "from volume_cli.layout import VolumeLayout; from volume_cli.progress import NullProgress; "
        "from volume_cli.project.discovery import load_project_folder; "
        f"r = install(layout=VolumeLayout(Path({str(layout.root)!r})), project=load_project_folder(Path({str(project.folder)!r})), "
        f"mirror={server.url!r}, progress=NullProgress()); sys.exit(0 if r.noop else 3)"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr


def test_a_broken_generation_is_not_taken_for_a_noop(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"m": {"packages": ["delta"]}})
    first = install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    generation = layout.generations_dir("demo", PY) / str(first.generation)
    os.rename(generation, generation.with_name("moved-away"))
    result = install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert not result.noop and _names(result.plan.add) == ["delta"]
    assert import_values(layout.deps_path("demo", PY), {"d": "delta.VERSION"}) == {"d": "1.0"}


def test_a_requirement_missing_from_the_index_fails_and_keeps_the_generation(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    good = projects.make("demo", {"m": {"packages": ["alpha==1.0"]}})
    first = install(layout=layout, project=good, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    bad = projects.make("demo", {"m": {"packages": ["alpha==1.0", "no-such-package"]}})
    with pytest.raises(ResolutionError) as caught:
        install(layout=layout, project=bad, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert "no-such-package" in caught.value.message
    assert caught.value.hint and "full log" in caught.value.hint
    logs = list(layout.logs_dir.glob("*uv-lock*.log"))
    assert logs and "no-such-package" in logs[0].read_text()
    assert os.readlink(layout.deps_path("demo", PY)).endswith(str(first.generation))
    assert import_values(layout.deps_path("demo", PY), {"a": "alpha.VERSION"}) == {"a": "1.0"}


def test_a_failing_uv_install_names_the_package_and_keeps_the_generation(
    layout: VolumeLayout, projects: Projects, wheels: Path, index: IndexServer, progress: NullProgress, tmp_path: Path
) -> None:
    good = projects.make("demo", {"m": {"packages": ["alpha==1.0"]}})
    first = install(layout=layout, project=good, mirror=index.url, cache_dir=tmp_path / "cache-a", progress=progress)
    bad = projects.make("demo", {"m": {"packages": ["alpha==1.0", "epsilon==3.0"]}})
    lock_project(layout=layout, project=bad, mirror=index.url, cache_dir=tmp_path / "cache-b", progress=progress)
    (wheels / "epsilon-3.0-py3-none-any.whl").unlink()  # locked, then gone from the index

    with pytest.raises(InstallError) as caught:
        install(layout=layout, project=bad, mirror=index.url, cache_dir=tmp_path / "cache-c", progress=progress)
    assert "epsilon" in caught.value.message and "current generation was kept" in caught.value.message
    assert os.readlink(layout.deps_path("demo", PY)).endswith(str(first.generation))
    assert not list((layout.deps_dir / ".staging").iterdir())
    assert list(layout.logs_dir.glob("*uv-pip-install*.log"))


def test_two_projects_share_store_entries(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    install(
        layout=layout,
        project=projects.make("one", {"m": {"packages": ["alpha==1.0"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    second = install(
        layout=layout,
        project=projects.make("two", {"m": {"packages": ["alpha==1.0", "delta"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    assert second.installed_count == 1 and second.reused_count == 2
    assert _entry_of(layout, "one", "alpha-1.0.dist-info") == _entry_of(layout, "two", "alpha-1.0.dist-info")
    assert len([name for name in os.listdir(layout.store_dir) if name.startswith("alpha-")]) == 1


def test_the_plugin_hook_runs_after_a_new_generation_becomes_current(
    layout: VolumeLayout, tmp_path: Path, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    folder = tmp_path / "plugins" / "hooked"
    folder.mkdir(parents=True)
    (folder / "project.py").write_text(
        "from volume_cli import Project\n\n"
        "class Hooked(Project):\n"
        "    name = 'hooked'\n"
        f"    python_version = {PY!r}\n\n"
        "    def after_install(self, context):\n"
        "        import os\n"
        "        (context.root / 'hook.txt').write_text(os.readlink(context.deps_path))\n"
        "        if (context.project_folder / 'fail').exists():\n"
        "            raise RuntimeError('boom')\n"
    )
    (folder / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [delta]\n")
    from volume_cli.project.discovery import load_project_folder

    result = install(
        layout=layout, project=load_project_folder(folder), mirror=index.url, cache_dir=isolated_uv, progress=progress
    )
    assert (layout.root / "hook.txt").read_text().endswith(str(result.generation))

    (folder / "fail").touch()
    (folder / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [delta, epsilon]\n")
    with pytest.raises(InstallError, match="after_install hook failed: RuntimeError: boom"):
        install(
            layout=layout,
            project=load_project_folder(folder),
            mirror=index.url,
            cache_dir=isolated_uv,
            progress=progress,
        )
    # the hook runs after the switch: the new generation is current
    assert import_values(layout.deps_path("hooked", PY), {"e": "epsilon.VERSION"}) == {"e": "3.0"}


_VOLUME_OPS: list[tuple[str, str]] = []
_COUNTING: list[Path] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _COUNTING and event in {"open", "os.listdir", "os.scandir", "os.rename", "os.symlink", "os.remove", "os.mkdir"}:
        path = str(args[0]) if args else ""
        if path.startswith(str(_COUNTING[0])):
            _VOLUME_OPS.append((event, path))


sys.addaudithook(_audit)


def test_the_noop_costs_a_handful_of_file_operations_on_the_volume(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"m": {"packages": ["alpha", "gamma", "epsilon"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    _VOLUME_OPS.clear()
    _COUNTING.append(layout.root)
    try:
        assert install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress).noop
    finally:
        _COUNTING.clear()
    # state.json, the generation record, lock.json: no listing, no writes, no lock file
    assert [event for event, _ in _VOLUME_OPS] == ["open", "open", "open"], _VOLUME_OPS
