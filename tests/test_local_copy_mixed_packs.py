"""A worker's first start uses each entry's pack where it has a usable one, and copies the others file by file.

A generation mixes entries with packs and entries without (stored by an older volume-cli, a pack
removed, an entry pushed through `sync push`): the packed entries are still unpacked, only the
others are copied one file at a time, into the same copy, merged as the generation's forest merges
them. A bad pack costs only its own entry's file copy. Budgets on the simulated volume at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.netvol.fixture import netvol, netvol_options  # noqa: F401 (fixtures)
from tests.netvol.mount import Counts, NetVol
from tests.test_netvol_budgets import PROJECT, Installed, installed, small_index  # noqa: F401
from tests.test_worker_first_start import _damaged, _generation, _packs, _tree, packed  # noqa: F401
from volume_cli import local_copy
from volume_cli.consumer_env import consumer_env
from volume_cli.deps.publish import write_packs
from volume_cli.layout import VolumeLayout

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


class Watched:
    """What a first start read: the packs opened and the files copied one by one (by their store folder)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.packs: list[str] = []
        self.copied: list[str] = []
        opened, copied = local_copy._Pack.open, local_copy.TreeCopy._copy_file

        def open_pack(pack: local_copy._Pack) -> None:
            self.packs.append(pack.entry)
            opened(pack)

        def copy_file(copy: local_copy.TreeCopy, folder: int, name: str, target: str) -> int:
            self.copied.append(os.path.join(os.readlink(f"/proc/self/fd/{folder}"), name))
            return copied(copy, folder, name, target)

        monkeypatch.setattr(local_copy._Pack, "open", open_pack)
        monkeypatch.setattr(local_copy.TreeCopy, "_copy_file", copy_file)

    def copied_entries(self, store: Path) -> set[str]:
        return {Path(path).relative_to(store).parts[0] for path in self.copied}


def _first_start(layout: VolumeLayout, cache: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(local_copy.COPY_ENV, "1")  # the volume here is on the cache's disk
    generation = _generation(layout)
    folder = local_copy.local_generation(generation, project=PROJECT, python_version=PY, cache=str(cache))
    assert folder.startswith(str(cache))
    assert _tree(folder) == _tree(generation)  # what the forest shows, byte for byte, modes kept
    return folder


def _entries(layout: VolumeLayout) -> list[str]:
    return sorted(os.listdir(layout.store_dir))


def _remove_packs(layout: VolumeLayout, entries: list[str]) -> None:
    for path in _packs(layout).iterdir():
        parsed = local_copy.parse_pack_name(path.name)
        if parsed is not None and parsed[0] in entries:
            path.unlink()


def test_entries_with_a_pack_are_unpacked_and_only_the_others_copied_file_by_file(
    packed: VolumeLayout,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entries = _entries(packed)
    missing = entries[::2]  # half of them, as after a `sync apply` of a partly new generation
    _remove_packs(packed, missing)
    watched = Watched(monkeypatch)
    folder = _first_start(packed, tmp_path / "cache", monkeypatch)
    assert sorted(watched.packs) == [entry for entry in entries if entry not in missing]
    assert watched.copied_entries(packed.store_dir) == set(missing)
    source = Path(_generation(packed)) / "netapp" / "__init__.py"
    assert os.stat(Path(folder) / "netapp" / "__init__.py").st_mtime_ns == os.stat(source).st_mtime_ns
    assert capsys.readouterr().err == ""  # a missing pack is no problem to report


def test_with_no_pack_at_all_every_entry_is_copied_from_the_store(
    packed: VolumeLayout,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for path in _packs(packed).iterdir():
        path.unlink()
    _packs(packed).rmdir()  # a volume written before packs existed
    watched = Watched(monkeypatch)
    _first_start(packed, tmp_path / "cache", monkeypatch)
    assert watched.packs == [] and watched.copied_entries(packed.store_dir) == set(_entries(packed))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("how", ["truncated", "altered byte", "a link"])
def test_a_bad_pack_costs_only_its_own_entry_a_file_copy(
    packed: VolumeLayout,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    how: str,
) -> None:
    _damaged(packed, how)  # netapp's pack
    watched = Watched(monkeypatch)
    _first_start(packed, tmp_path / "cache", monkeypatch)
    bad = next(entry for entry in _entries(packed) if entry.startswith("netapp"))
    assert watched.copied_entries(packed.store_dir) == {bad}
    assert set(_entries(packed)) - {bad} <= set(watched.packs)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and f"copying {bad} of " in lines[0] and "file by file, not from packs" in lines[0], lines


def test_a_time_limit_while_copying_a_mixed_generation_means_the_volume_path(
    packed: VolumeLayout,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _remove_packs(packed, _entries(packed)[::2])
    monkeypatch.setenv(local_copy.COPY_ENV, "1")
    monkeypatch.setenv(local_copy.TIMEOUT_ENV, "0")
    generation = _generation(packed)
    cache = tmp_path / "cache"
    assert local_copy.local_generation(generation, project=PROJECT, python_version=PY, cache=str(cache)) == generation
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "time limit" in lines[0] and "importing from the volume" in lines[0], lines
    copies = Path(local_copy.copies_folder(str(cache), generation, PROJECT, PY))
    assert [path.name for path in copies.iterdir()] == [f"{os.path.basename(generation)}.lock"]


def _clashing_store(root: Path) -> dict[str, Path]:
    """Two entries in a store as the forest sees them: a shared folder, a clashing file, a folder beating a file."""
    store = root / "python-deps" / ".store"
    sources = {"a-1": store / "a-1", "b-1": store / "b-1"}
    for name, folder in sources.items():
        (folder / "shared").mkdir(parents=True)
        (folder / "shared" / f"{name}.py").write_text(f"N = {name!r}\n")
        (folder / "README").write_text(f"from {name}\n")
        (folder / ".volume-cli-entry.json").write_text("{}")  # the entry's own record: never in the forest
    (sources["a-1"] / "thing").write_text("a file\n")
    (sources["b-1"] / "thing").mkdir()
    (sources["b-1"] / "thing" / "x.py").write_text("X = 1\n")
    os.symlink("shared/b-1.py", sources["b-1"] / "alias.py")  # inside its entry: kept as a link
    return sources


@pytest.mark.parametrize("packed_entry", ["a-1", "b-1"])
def test_packed_and_unpacked_entries_clash_as_the_forest_resolves_them(tmp_path: Path, packed_entry: str) -> None:
    sources = _clashing_store(tmp_path)
    packs = tmp_path / "python-deps" / ".packs"
    write_packs({packed_entry: sources[packed_entry]}, packs, threads=1)
    found = {
        entry: (str(packs / name), size, digest)
        for name in os.listdir(packs)
        for entry, size, digest in [local_copy.parse_pack_name(name)]  # type: ignore[misc]
    }
    folders = {name: str(path) for name, path in sources.items() if name != packed_entry}
    target = tmp_path / "copy"
    target.mkdir()
    files, _ = local_copy.PackUnpack(found, str(target), 1 << 30, time.monotonic() + 60, folders=folders).run()
    assert (target / "README").read_text() == "from a-1\n"
    assert (target / "thing" / "x.py").is_file()
    assert sorted(os.listdir(target / "shared")) == ["a-1.py", "b-1.py"]
    assert os.readlink(target / "alias.py") == "shared/b-1.py"
    assert not (target / ".volume-cli-entry.json").exists()
    assert files == 4  # README once, shared/ twice, thing/x.py: no losing copy (links are not counted)


def test_an_unpacked_entry_s_links_are_followed_only_inside_python_deps(tmp_path: Path) -> None:
    sources = _clashing_store(tmp_path)
    (tmp_path / "python-deps" / "data.txt").write_text("inside\n")
    os.symlink("../../data.txt", sources["a-1"] / "data.txt")  # leaves its entry, stays in python-deps: copied
    target = tmp_path / "copy"
    target.mkdir()
    folders = {name: str(path) for name, path in sources.items()}
    local_copy.PackUnpack({}, str(target), 1 << 30, time.monotonic() + 60, folders=folders).run()
    assert (target / "data.txt").read_text() == "inside\n" and not (target / "data.txt").is_symlink()
    (tmp_path / "outside.txt").write_text("outside\n")
    os.symlink(str(tmp_path / "outside.txt"), sources["b-1"] / "out.txt")
    again = tmp_path / "again"
    again.mkdir()
    with pytest.raises(local_copy.CopySkipped, match="leads out"):
        local_copy.PackUnpack({}, str(again), 1 << 30, time.monotonic() + 60, folders=folders).run()
    assert not (again / "out.txt").exists()


def test_a_pack_written_with_readers_ahead_is_the_same_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sync apply`` reads an entry's files on the volume several at a time: the pack is byte for byte the same."""
    source = tmp_path / "entry"
    for number in range(40):
        folder = source / f"p{number % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"m{number}.py").write_bytes(os.urandom(number * 97))
    names = []
    for readers in (1, 8):
        packs = tmp_path / f"packs-{readers}"
        packs.mkdir()
        handle = os.open(packs, os.O_PATH | os.O_DIRECTORY)
        try:
            names.append(local_copy.write_pack(str(source), handle, "entry-1", readers=readers))
        finally:
            os.close(handle)
        assert os.listdir(packs) == [names[-1]]
    assert names[0] == names[1]  # size and sha256 in the name: the same bytes
    scan = local_copy._pack_members

    def vanishing(folder: str, skip: frozenset[str]) -> Any:
        found = scan(folder, skip)
        (source / "p1" / "m25.py").unlink()  # removed while its entry is packed
        return found

    monkeypatch.setattr(local_copy, "_pack_members", vanishing)
    packs = tmp_path / "packs-failed"
    packs.mkdir()
    handle = os.open(packs, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(FileNotFoundError):
            local_copy.write_pack(str(source), handle, "entry-1", readers=8)
    finally:
        os.close(handle)
    assert os.listdir(packs) == []  # no temp file left


# -- on the simulated network volume ------------------------------------------------------------
# Kernel cache off: the counts are exact. Budgets are the measured counts with ~10% slack.
BUDGET_FIRST_START_HALF_PACKED = 570  # measured 519 (4 entries, 2 packed): 239 with every pack
BUDGET_FIRST_START_UNPACKED = 830  # measured 751, from the store; 1,246 walking the generation (before)


@pytest.fixture
def netvol_options() -> dict[str, Any]:  # noqa: F811 (this module's settings)
    return {"latency_ms": 0.0, "cache_seconds": 0.0}


def _start(volume: NetVol, env: dict[str, str], cwd: Path) -> Counts:
    volume.reset()
    code = "import netapp.core, netapp.util; print(netapp.core.__file__)"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith(env["VOLUME_CLI_LOCAL_CACHE"]), done.stdout
    return volume.reset()


def test_budget_first_start_with_half_the_packs_or_none(installed: Installed, netvol: NetVol, tmp_path: Path) -> None:  # noqa: F811
    layout = installed.layout
    variables = consumer_env(layout=layout, project=PROJECT, python_version=PY, mount=None).variables
    env = {"PATH": os.environ["PATH"], **variables}
    packs = _start(netvol, env | {"VOLUME_CLI_LOCAL_CACHE": str(tmp_path / "all")}, tmp_path)
    tree = _start(netvol, env | {"VOLUME_CLI_LOCAL_CACHE": str(tmp_path / "tree"), local_copy.PACKS_ENV: "0"}, tmp_path)
    _remove_packs(layout, _entries(layout)[::2])
    half = _start(netvol, env | {"VOLUME_CLI_LOCAL_CACHE": str(tmp_path / "half")}, tmp_path)
    _remove_packs(layout, _entries(layout))
    none = _start(netvol, env | {"VOLUME_CLI_LOCAL_CACHE": str(tmp_path / "none")}, tmp_path)
    print(f"all packs {packs}\nhalf {half}\nnone {none}\nthe generation file by file {tree}")
    assert packs.total < half.total < none.total <= tree.total
    assert half.total <= BUDGET_FIRST_START_HALF_PACKED, half
    assert none.total <= BUDGET_FIRST_START_UNPACKED, none


# Measured 625 (4 entries, 42 files in 17 folders, no kernel cache; 1,047 opening each file by its whole path).
BUDGET_PACKING_ON_THE_VOLUME = 690


def test_budget_packing_entries_on_the_volume_as_sync_apply_does(installed: Installed, netvol: NetVol) -> None:  # noqa: F811
    from volume_cli.sync.apply import _pack_entries

    layout = installed.layout
    before = {path.name: path.read_bytes() for path in _packs(layout).iterdir()}
    for path in _packs(layout).iterdir():
        path.unlink()
    netvol.reset()
    _pack_entries({path.name: path for path in layout.store_dir.iterdir()}, _packs(layout))
    counts = netvol.reset()
    print(f"packing {len(before)} entries {counts}")
    written = [local_copy.parse_pack_name(path.name) for path in _packs(layout).iterdir()]
    assert sorted(item[0] for item in written if item is not None) == sorted(os.listdir(layout.store_dir))
    assert len(written) == len(before)  # one whole pack per entry, no temp file
    assert counts.total <= BUDGET_PACKING_ON_THE_VOLUME, counts
