"""A one-package change pays for the change, not for the whole generation (issue 8, one leaf ≤ 0.5× raw uv).

On the simulated network volume (kernel cache off, so counts are exact): the plan reads
the current generation through its record instead of walking every dist-info link into
the store, and what it reads still agrees with the disk when the store lost an entry.
"""

from __future__ import annotations

import os
import shutil

from tests.deps.helpers import PY, import_values
from tests.netvol.fixture import netvol  # noqa: F401 (fixture)
from tests.netvol.mount import NetVol
from tests.test_netvol_install import (  # noqa: F401 (fixtures)
    PROJECT,
    SHAPES,
    Bench,
    bench,
    netvol_options,
    wheel_index,
)
from volume_cli.deps.documents import EntryInfo, read_generation_record
from volume_cli.deps.plan import read_installed
from volume_cli.layout import VolumeLayout


def _current_record_entries(layout: VolumeLayout, generation: str | None) -> list[EntryInfo]:
    record = read_generation_record(layout, PROJECT, str(generation))
    assert record is not None
    return list(record.entries)


def test_the_plan_reads_linked_dist_infos_from_the_record_not_through_the_links(bench: Bench) -> None:  # noqa: F811
    project = bench.project()
    bench.install(project)
    layout = bench.layout
    generation = os.readlink(layout.deps_path(PROJECT, PY)).rsplit("/", 1)[-1]
    entries = _current_record_entries(layout, generation)
    from_disk = read_installed(layout.deps_path(PROJECT, PY))
    bench.netvol.reset()
    from_record = read_installed(layout.deps_path(PROJECT, PY), recorded=entries, store_dir=layout.store_dir)
    counts = bench.netvol.reset()
    print(f"read_installed through the record: {counts}")
    assert from_record == from_disk
    assert set(from_record) == set(SHAPES)
    assert counts["open"] == counts["read"] == 0  # no METADATA opened: one readlink per dist-info
    assert counts["readlink"] <= len(SHAPES) + 2


def test_a_dist_info_the_record_does_not_know_is_read_from_its_metadata(bench: Bench) -> None:  # noqa: F811
    bench.install(bench.project())
    layout = bench.layout
    generation = os.readlink(layout.deps_path(PROJECT, PY)).rsplit("/", 1)[-1]
    entries = [entry for entry in _current_record_entries(layout, generation) if entry.name != "pubio"]
    installed = read_installed(layout.deps_path(PROJECT, PY), recorded=entries, store_dir=layout.store_dir)
    assert installed["pubio"].version == "1.0"  # from its METADATA
    assert installed["pubio"].entry is not None


def test_a_store_entry_lost_from_under_the_generation_is_installed_again(bench: Bench, netvol: NetVol) -> None:  # noqa: F811
    bench.install(bench.project())
    layout = bench.layout
    lost = next(name for name in os.listdir(layout.store_dir) if name.startswith("pubcore-"))
    shutil.rmtree(layout.store_dir / lost)  # not through gc: the record still names it
    installed = read_installed(
        layout.deps_path(PROJECT, PY),
        recorded=_current_record_entries(layout, os.readlink(layout.deps_path(PROJECT, PY)).rsplit("/", 1)[-1]),
        store_dir=layout.store_dir,
    )
    assert "pubcore" not in installed  # the disk, not the record, says what is there
    bench.install(bench.project(leaf="2.0"))
    assert import_values(layout.deps_path(PROJECT, PY), {"v": "pubcore.sub0.m1.X", "leaf": "publeaf.VERSION"}) == {
        "v": 1,
        "leaf": "2.0",
    }
    assert (layout.store_dir / lost).is_dir()
