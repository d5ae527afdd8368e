"""`sync apply` gives the pushed entries packs on the destination volume; a worker applying at start does not.

A push carries the entries' files, not their packs (docs/regions.md says why). The pod's `sync apply`
writes a pack for each entry of the generation it made current, after the switch, so a worker's first
start there unpacks instead of copying file by file. A serverless worker applying at start writes none
(its start must not wait on it): its copy takes the unpacked entries file by file, and a later
`sync apply`, with nothing pending, writes the missing packs. Runs against `rclone serve s3` only
(the bucket's folder is the mounted volume): the S3 side is test_sync_push_apply.py's.
"""

from __future__ import annotations

import errno
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import PY
from tests.test_sync_push_apply import Source, Target, _apply, _push, source, targets  # noqa: F401 (fixtures)
from volume_cli import local_copy, pushed_apply
from volume_cli.deps.documents import read_generation_record
from volume_cli.deps.forest import current_generation, generation_dir
from volume_cli.layout import VolumeLayout
from volume_cli.sync import apply as sync_apply
from volume_cli.sync.apply import ApplyResult

pytest_plugins = ["tests.s3servers"]
pytestmark = pytest.mark.parametrize("s3_server", ["rclone"], indirect=True)


def _entries(root: Path) -> list[str]:
    layout = VolumeLayout(root)
    generation = current_generation(layout, "story", PY)
    assert generation is not None
    record = read_generation_record(layout, "story", generation)
    assert record is not None
    return sorted(entry.entry for entry in record.entries)


def _whole_packs(root: Path) -> list[str]:
    """The entries with a pack whose bytes match its name's size and sha256."""
    folder = root / "python-deps" / local_copy.PACKS
    found = []
    for name in sorted(os.listdir(folder)) if folder.is_dir() else []:
        parsed = local_copy.parse_pack_name(name)
        if parsed is None:
            continue
        data = (folder / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == parsed[1:], name
        found.append(parsed[0])
    return sorted(found)


def _first_start(root: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A worker's first start on ``root``: the entries it copied file by file (by their store folder)."""
    monkeypatch.setenv(local_copy.COPY_ENV, "1")  # the volume here is on the cache's disk
    copied: list[str] = []
    original = local_copy.TreeCopy._copy_file

    def copy_file(copy: local_copy.TreeCopy, folder: int, name: str, target: str) -> int:
        copied.append(
            Path(os.readlink(f"/proc/self/fd/{folder}")).relative_to(root / "python-deps" / ".store").parts[0]
        )
        return original(copy, folder, name, target)

    monkeypatch.setattr(local_copy.TreeCopy, "_copy_file", copy_file)
    layout = VolumeLayout(root)
    name = current_generation(layout, "story", PY)
    assert name is not None
    generation = os.path.realpath(generation_dir(layout, "story", PY, name))
    folder = local_copy.local_generation(generation, project="story", python_version=PY, cache=str(cache))
    assert folder.startswith(str(cache)) and (Path(folder) / "alpha" / "__init__.py").is_file()
    return sorted(set(copied))


def test_sync_apply_packs_every_entry_it_placed(
    source: Source,  # noqa: F811
    targets: list[Target],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _push(source, targets[:1], tmp_path)
    root = targets[0].mounted(tmp_path)
    assert _whole_packs(root) == []  # the push carries none
    applied = _apply(root)
    assert isinstance(applied, ApplyResult) and applied.switched
    entries = _entries(root)
    assert applied.packs_written == len(entries) and applied.packs_error is None
    assert applied.to_dict()["packs_written"] == len(entries)
    assert _whole_packs(root) == entries
    assert _first_start(root, tmp_path / "cache", monkeypatch) == []  # every entry unpacked
    again = _apply(root)
    assert isinstance(again, ApplyResult) and again.generation is None and again.packs_written == 0


def test_a_worker_applying_at_start_writes_no_pack_and_sync_apply_adds_them_later(
    source: Source,  # noqa: F811
    targets: list[Target],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _push(source, targets[:1], tmp_path)
    root = targets[0].mounted(tmp_path)
    line = pushed_apply.apply_on_start(str(root), "story", PY, environ={})
    assert line is not None and "applied the pushed generation" in line
    assert _whole_packs(root) == []  # the worker's start did not wait on packs
    entries = _entries(root)
    assert _first_start(root, tmp_path / "cache", monkeypatch) == entries  # every entry file by file
    later = _apply(root)  # a pod, later: nothing pending, the packs still missing
    assert isinstance(later, ApplyResult) and later.generation is None and later.packs_written == len(entries)
    assert _whole_packs(root) == entries


def test_an_apply_that_fails_to_pack_is_still_applied_and_the_next_one_converges(
    source: Source,  # noqa: F811
    targets: list[Target],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _push(source, targets[:1], tmp_path)
    root = targets[0].mounted(tmp_path)
    original = sync_apply._pack_entries

    def killed(sources: dict[str, Path], packs: Path) -> None:
        packs.mkdir(exist_ok=True)
        (packs / f"{local_copy.TEMP_PREFIX}{min(sources)}-dead").write_bytes(b"torn")  # a killed writer's temp
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sync_apply, "_pack_entries", killed)
    applied = _apply(root)
    assert isinstance(applied, ApplyResult) and applied.switched and applied.packs_written == 0
    assert applied.packs_error is not None and "No space left" in applied.packs_error
    assert _whole_packs(root) == []
    monkeypatch.setattr(sync_apply, "_pack_entries", original)
    again = _apply(root)
    assert isinstance(again, ApplyResult) and again.packs_written == len(_entries(root))
    assert _whole_packs(root) == _entries(root)


def test_two_applies_packing_at_once_leave_one_whole_pack_per_entry(
    source: Source,  # noqa: F811
    targets: list[Target],  # noqa: F811
    tmp_path: Path,
) -> None:
    _push(source, targets[:1], tmp_path)
    root = targets[0].mounted(tmp_path)
    assert pushed_apply.apply_on_start(str(root), "story", PY, environ={}) is not None  # no packs yet
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _apply(root), range(2)))
    assert all(isinstance(result, ApplyResult) and result.packs_error is None for result in results)
    assert _whole_packs(root) == _entries(root)  # one per entry: the second rename replaced an equal file
    assert sorted(os.listdir(root / "python-deps" / local_copy.PACKS)) == sorted(
        name for name in os.listdir(root / "python-deps" / local_copy.PACKS) if not name.startswith(".")
    )  # no temp file left
