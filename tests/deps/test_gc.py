"""``gc``: old generations go after the grace period, shared and young entries stay."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.helpers import Projects
from tests.wheelfactory import IndexServer
from volume_cli.deps import gc, install, rollback
from volume_cli.deps.documents import generation_record_path
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import PY, import_values


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past), follow_symlinks=False)


def test_gc_keeps_current_previous_and_young_generations_and_shared_entries(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    def apply(name: str, packages: list[str]) -> str:
        result = install(
            layout=layout,
            project=projects.make(name, {"m": {"packages": packages}}),
            mirror=index.url,
            cache_dir=isolated_uv,
            progress=progress,
        )
        return str(result.generation)

    first = apply("one", ["alpha==1.0", "epsilon==3.0"])
    second = apply("one", ["alpha==2.0", "epsilon==1.0"])
    third = apply("one", ["delta"])
    apply("two", ["alpha==1.0"])  # shares alpha 1.0 and beta with "one"'s first generation
    store_before = sorted(os.listdir(layout.store_dir))

    # everything is younger than a day: nothing goes
    report = gc(layout=layout, grace_seconds=86400, dry_run=False, progress=progress)
    assert report.generations_removed == () and report.entries_removed == ()
    assert sorted(os.listdir(layout.store_dir)) == store_before

    dry = gc(layout=layout, grace_seconds=0, dry_run=True, progress=progress)
    assert dry.generations_removed == (f"one/{first}",)
    assert sorted(dry.entries_removed) == [name for name in store_before if name.startswith("epsilon-3.0")]
    assert dry.bytes_freed > 0
    assert sorted(os.listdir(layout.store_dir)) == store_before  # dry run removed nothing

    report = gc(layout=layout, grace_seconds=0, dry_run=False, progress=progress)
    assert report.generations_removed == dry.generations_removed and report.entries_removed == dry.entries_removed
    assert report.bytes_freed == dry.bytes_freed
    assert not (layout.generations_dir("one", PY) / first).exists()
    assert not generation_record_path(layout, "one", first).exists()
    # alpha 1.0 and beta are still used by "two"; alpha 2.0 and epsilon 1.0 by "one"'s previous generation
    remaining = sorted(os.listdir(layout.store_dir))
    assert [name.split("-")[0] for name in remaining] == ["alpha", "alpha", "beta", "delta", "epsilon"]
    assert import_values(layout.deps_path("two", PY), {"a": "alpha.VERSION"}) == {"a": "1.0"}
    assert import_values(layout.deps_path("one", PY), {"d": "delta.VERSION"}) == {"d": "1.0"}
    # the previous generation survived, so rollback still works
    rollback(layout=layout, project=projects.make("one", {"m": {"packages": ["delta"]}}), progress=progress)
    assert import_values(layout.deps_path("one", PY), {"a": "alpha.VERSION"}) == {"a": "2.0"}
    assert second in os.readlink(layout.deps_path("one", PY)) and third


def test_gc_leaves_young_unreferenced_entries_and_removes_leftovers(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    install(
        layout=layout,
        project=projects.make("one", {"m": {"packages": ["delta"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    # an entry an install just made but has not linked yet, and an unfinished generation of a killed run
    young = layout.store_dir / "young-1.0-000000000000-py3.11"
    young.mkdir()
    unfinished = layout.generations_dir("one", PY) / ".tmp-g20000101T000000-abcdef"
    unfinished.mkdir()
    old = layout.store_dir / "old-1.0-000000000000-py3.11"
    old.mkdir()
    _age(old, 7200)
    _age(unfinished, 7200)

    report = gc(layout=layout, grace_seconds=3600, dry_run=False, progress=progress)
    assert report.entries_removed == (old.name,)
    assert young.name in report.young_entries_kept and young.is_dir()
    assert report.generations_removed == (f"one/{unfinished.name}",) and not unfinished.exists()
