"""``gc`` racing installs and rollbacks never removes what a current, previous or in-progress generation uses."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.helpers import Projects
from tests.wheelfactory import IndexServer
from volume_cli.deps import gc, install
from volume_cli.deps.documents import GenerationRecord, generation_record_path
from volume_cli.deps.forest import current_generation
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.store.documents import read_document

from . import racekit
from .helpers import PY, import_values

NEW = {"m": {"packages": ["alpha==2.0", "gamma", "epsilon"]}}


def _assert_current_whole(layout: VolumeLayout, project: str) -> None:
    current = current_generation(layout, project, PY)
    assert current is not None
    record = read_document(generation_record_path(layout, project, current), GenerationRecord)
    assert record is not None
    missing = [entry.entry for entry in record.entries if not (layout.store_dir / entry.entry).is_dir()]
    assert not missing, f"gc removed entries of the current generation {current}: {missing}"


def _wait_or_block(process: subprocess.Popen[str], seconds: float) -> None:
    """Let ``process`` run to its end, or until it has been blocked (on a lock) for ``seconds``."""
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass


def test_gc_listing_then_an_install_switching_keeps_the_new_generation(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    tmp_path: Path,
) -> None:
    # The new config's entries are in the store, used only by an old generation gc is about to collect.
    for packages in (NEW["m"]["packages"], ["alpha==1.0"], ["delta"]):
        install(
            layout=layout,
            project=projects.make("demo", {"m": {"packages": packages}}),
            mirror=index.url,
            cache_dir=isolated_uv,
            progress=progress,
        )
    new = projects.make("demo", NEW)
    gate = tmp_path / "gate"
    gate.mkdir()
    installer = racekit.start(
        "install", layout, new.folder, mirror=index.url, cache=isolated_uv, pause_at=("forest-built", gate)
    )
    racekit.wait_reached(installer, "forest-built", gate)  # it reused (and touched) the old entries
    collector = racekit.start("gc", layout, "0", pause_at=("gc-listed", gate))
    racekit.wait_reached(collector, "gc-listed", gate)
    before = current_generation(layout, "demo", PY)
    racekit.release("forest-built", gate)
    deadline = time.monotonic() + 10
    # switched (and recorded) while gc holds its listing
    while installer.poll() is None and current_generation(layout, "demo", PY) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    racekit.release("gc-listed", gate)
    gc_code, gc_out = racekit.finish(collector)
    install_code, install_out = racekit.finish(installer)
    assert install_code == 0, install_out
    assert gc_code == 0, gc_out
    _assert_current_whole(layout, "demo")
    path = layout.deps_path("demo", PY)
    assert import_values(path, {"a": "alpha.VERSION", "g": "gamma.VALUE", "e": "epsilon.VERSION"}) == {
        "a": "2.0",
        "g": "gamma",
        "e": "3.0",
    }


def test_gc_while_an_install_is_about_to_switch_keeps_the_in_progress_generation(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    tmp_path: Path,
) -> None:
    install(
        layout=layout,
        project=projects.make("demo", {"m": {"packages": ["alpha==1.0"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    new = projects.make("demo", NEW)
    gate = tmp_path / "gate"
    gate.mkdir()
    for point in ("forest-built", "before-switch"):
        installer = racekit.start(
            "install", layout, new.folder, mirror=index.url, cache=isolated_uv, pause_at=(point, gate)
        )
        racekit.wait_reached(installer, point, gate)
        report = gc(layout=layout, grace_seconds=0, dry_run=False, progress=progress)
        racekit.release(point, gate)
        code, out = racekit.finish(installer)
        assert code == 0, f"{point}: {out}; gc removed {report.generations_removed} {report.entries_removed}"
        _assert_current_whole(layout, "demo")
        assert import_values(layout.deps_path("demo", PY), {"g": "gamma.VALUE"}) == {"g": "gamma"}
        # back to the old set for the next point
        install(
            layout=layout,
            project=projects.make("demo", {"m": {"packages": ["alpha==1.0"]}}),
            mirror=index.url,
            cache_dir=isolated_uv,
            progress=progress,
        )
        new = projects.make("demo", NEW)


def test_gc_racing_a_rollback_keeps_both_generations_and_a_second_rollback_undoes_it(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    tmp_path: Path,
) -> None:
    first = install(
        layout=layout,
        project=projects.make("demo", {"m": {"packages": ["alpha==1.0"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    new = projects.make("demo", NEW)
    second = install(layout=layout, project=new, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    gate = tmp_path / "gate"
    gate.mkdir()
    back = racekit.start("rollback", layout, new.folder, pause_at=("rollback-switched", gate))
    racekit.wait_reached(back, "rollback-switched", gate)
    gc(layout=layout, grace_seconds=0, dry_run=False, progress=progress)
    racekit.release("rollback-switched", gate)
    code, out = racekit.finish(back)
    assert code == 0, out
    assert current_generation(layout, "demo", PY) == first.generation
    _assert_current_whole(layout, "demo")
    gc(layout=layout, grace_seconds=0, dry_run=False, progress=progress)
    again = racekit.start("rollback", layout, new.folder)
    code, out = racekit.finish(again)
    assert code == 0, out
    assert json.loads(out.splitlines()[-1])["generation"] == second.generation
    _assert_current_whole(layout, "demo")
    assert import_values(layout.deps_path("demo", PY), {"g": "gamma.VALUE"}) == {"g": "gamma"}


def test_two_gc_at_once_the_second_waits_or_fails_clearly(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    tmp_path: Path,
) -> None:
    install(
        layout=layout,
        project=projects.make("demo", {"m": {"packages": ["alpha==1.0"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    gate = tmp_path / "gate"
    gate.mkdir()
    first = racekit.start("gc", layout, "0", pause_at=("gc-listed", gate))
    racekit.wait_reached(first, "gc-listed", gate)
    second = racekit.start("gc", layout, "0")
    _wait_or_block(second, 1.0)
    assert second.poll() is None  # waiting for the first
    racekit.release("gc-listed", gate)
    assert racekit.finish(first)[0] == 0
    assert racekit.finish(second)[0] == 0
    _assert_current_whole(layout, "demo")
    assert sorted(os.listdir(layout.store_dir)) == sorted(
        entry.entry
        for entry in read_document(
            generation_record_path(layout, "demo", str(current_generation(layout, "demo", PY))), GenerationRecord
        ).entries  # type: ignore[union-attr]
    )


def test_a_killed_install_s_intent_does_not_keep_its_leftovers_forever(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    import signal

    from volume_cli.deps.documents import install_intent_path

    install(
        layout=layout,
        project=projects.make("demo", {"m": {"packages": ["alpha==1.0"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    new = projects.make("demo", NEW)
    code, out = racekit.finish(
        racekit.start("install", layout, new.folder, mirror=index.url, cache=isolated_uv, crash_at="before-switch")
    )
    assert code == -signal.SIGKILL, out
    assert install_intent_path(layout, "demo").exists()
    report = gc(layout=layout, grace_seconds=0, dry_run=False, progress=progress)
    # Its generation (and the spare it was building beside it), its entries.
    removed = {label.split("/")[1].removeprefix(".tmp-spare-") for label in report.generations_removed}
    assert len(removed) == 1 and len(report.entries_removed) == 4, report
    _assert_current_whole(layout, "demo")
    install(layout=layout, project=new, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert not install_intent_path(layout, "demo").exists()
    _assert_current_whole(layout, "demo")


def test_gc_leaves_the_staging_folder_of_a_long_running_install_alone(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    tmp_path: Path,
) -> None:
    new = projects.make("demo", NEW)
    gate = tmp_path / "gate"
    gate.mkdir()
    installer = racekit.start(
        "install", layout, new.folder, mirror=index.url, cache=isolated_uv, pause_at=("published", gate)
    )
    racekit.wait_reached(installer, "published", gate)
    staging = layout.deps_dir / ".staging"
    (folder,) = os.listdir(staging)
    long_ago = time.time() - 7 * 3600  # a build that has run for hours (another pod's would look the same)
    os.utime(staging / folder, (long_ago, long_ago))
    gc(layout=layout, grace_seconds=0, dry_run=False, progress=progress)
    racekit.release("published", gate)
    code, out = racekit.finish(installer)
    assert code == 0, out
    _assert_current_whole(layout, "demo")
