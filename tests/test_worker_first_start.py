"""A worker's first start unpacks its entries' packs (volume_cli/local_copy.py, written by deps/publish.py).

Each store entry gets one pack at publish time; the first start on a machine reads a few
large files instead of every file of the generation. A pack that is torn, altered or names
anything outside its entry is never trusted: the copy is then made file by file, as for
entries without a pack (older installs, `sync push`). The simulated network volume's
operation budgets for the first start are at the end.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Projects
from tests.netvol.fixture import netvol, netvol_options  # noqa: F401 (fixtures)
from tests.netvol.mount import Counts, NetVol
from tests.test_netvol_budgets import _ACTIVATE, PROJECT, Installed, _uv_cache, installed, small_index  # noqa: F401
from tests.wheelfactory import IndexServer
from volume_cli import local_copy
from volume_cli.consumer_env import consumer_env, write_runtime_copy
from volume_cli.deps import install
from volume_cli.deps.forest import current_generation, generation_dir
from volume_cli.deps.publish import remove_packs, write_packs
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
IMPORT = "import netapp.core, netapp.util; print(netapp.core.__file__)"


@pytest.fixture
def packed(small_index: IndexServer, tmp_path: Path) -> VolumeLayout:  # noqa: F811
    layout = VolumeLayout(tmp_path / "volume")
    layout.root.mkdir()
    project = Projects(tmp_path / "projects").make(PROJECT, {"main": {"packages": ["netapp", "nettiny"]}})
    install(layout=layout, project=project, mirror=small_index.url, cache_dir=_uv_cache(), progress=NullProgress())
    # On its own disk the install renames entries and writes no packs (no worker copies from there):
    # write them as publishing onto a network volume does.
    entries = {path.name: path for path in layout.store_dir.iterdir()}
    write_packs(entries, layout.deps_dir / local_copy.PACKS, threads=4)
    return layout


def _generation(layout: VolumeLayout) -> str:
    name = current_generation(layout, PROJECT, PY)
    assert name is not None
    return os.path.realpath(generation_dir(layout, PROJECT, PY, name))


def _packs(layout: VolumeLayout) -> Path:
    return layout.deps_dir / local_copy.PACKS


def _tree(folder: str) -> dict[str, tuple[str, int, bytes | str]]:
    """What an import sees under ``folder``, links followed: path → (kind, mode, bytes or link text)."""
    seen: dict[str, tuple[str, int, bytes | str]] = {}
    for top, folders, files in os.walk(folder, followlinks=True):
        for name in files + folders:
            path = os.path.join(top, name)
            relative = os.path.relpath(path, folder)
            if relative == local_copy.MARKER:
                continue
            info = os.stat(path)
            content: bytes | str = Path(path).read_bytes() if stat.S_ISREG(info.st_mode) else ""
            seen[relative] = ("dir" if stat.S_ISDIR(info.st_mode) else "file", stat.S_IMODE(info.st_mode), content)
    return seen


def _first_start(layout: VolumeLayout, cache: Path, monkeypatch: pytest.MonkeyPatch, *, files: bool) -> str:
    """A first start in this process; ``files``: whether the file-by-file copy is expected to run."""
    monkeypatch.setenv(local_copy.COPY_ENV, "1")  # the volume here is on the cache's disk
    copied: list[str] = []
    original = local_copy.TreeCopy.run

    def run(self: local_copy.TreeCopy) -> tuple[int, int]:
        copied.append(self.source)
        return original(self)

    monkeypatch.setattr(local_copy.TreeCopy, "run", run)
    generation = _generation(layout)
    folder = local_copy.local_generation(generation, project=PROJECT, python_version=PY, cache=str(cache))
    assert folder.startswith(str(cache)) and bool(copied) == files, copied
    assert _tree(folder) == _tree(generation)  # what the forest shows, byte for byte, modes kept
    return folder


def test_the_first_start_unpacks_packs_instead_of_copying_files(
    packed: VolumeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _first_start(packed, tmp_path / "cache", monkeypatch, files=False)
    source = Path(_generation(packed)) / "netapp" / "__init__.py"
    assert os.stat(Path(folder) / "netapp" / "__init__.py").st_mtime_ns == os.stat(source).st_mtime_ns
    assert capsys.readouterr().err == ""


def test_an_entry_without_a_pack_is_copied_file_by_file(
    packed: VolumeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = next(path for path in _packs(packed).iterdir() if path.name.startswith("nettiny"))
    pack.unlink()  # an entry stored by an older volume-cli, or pushed through S3
    _first_start(packed, tmp_path / "cache", monkeypatch, files=True)
    assert capsys.readouterr().err == ""


def _replace_pack(layout: VolumeLayout, entry_prefix: str, data: bytes, *, digest: str | None = None) -> None:
    old = next(path for path in _packs(layout).iterdir() if path.name.startswith(entry_prefix))
    entry = local_copy.parse_pack_name(old.name)[0]  # type: ignore[index]
    old.unlink()
    name = local_copy.pack_name(entry, len(data), digest or hashlib.sha256(data).hexdigest())
    (_packs(layout) / name).write_bytes(data)


def _pack(index: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(index).encode()
    return local_copy.PACK_MAGIC + b"%d\n" % len(raw) + raw + data


HOSTILE = {
    "parent": {"folders": [], "files": [["../escaped.py", 420, 2, 0]], "links": []},
    "absolute": {"folders": [], "files": [["/tmp/escaped.py", 420, 2, 0]], "links": []},
    "dotdot inside": {"folders": ["a"], "files": [["a/../../escaped.py", 420, 2, 0]], "links": []},
    "the marker": {"folders": [], "files": [[local_copy.MARKER, 420, 2, 0]], "links": []},
    "link up": {"folders": [], "files": [], "links": [["up", "../.."]]},
    "link absolute": {"folders": [], "files": [], "links": [["etc", "/etc"]]},
    "link through a link": {"folders": ["p"], "files": [], "links": [["p/a", "."], ["p/b", "a/../../.."]]},
    "not a list": {"folders": [], "files": "x", "links": []},
}
_INDEX = b'{"folders": [], "files": [], "links": []}'
# Heads that are not a pack's, each named with its true size and sha256: only the parser can refuse it.
BAD_HEADS = {
    "wrong magic": b"volume-cli-pack 9\n%d\n" % len(_INDEX) + _INDEX,
    "no newline after the length": local_copy.PACK_MAGIC + b"1" * 30,
    "a length that is not a number": local_copy.PACK_MAGIC + b"-1\n" + _INDEX,
    "an empty length": local_copy.PACK_MAGIC + b"\n" + _INDEX,
    "an index over the limit": local_copy.PACK_MAGIC + b"%d\n" % (local_copy.MAX_INDEX_BYTES + 1) + _INDEX,
    "only the magic": local_copy.PACK_MAGIC,
}
UNUSABLE = {**{name: _pack(index, b"x\n") for name, index in HOSTILE.items()}, **BAD_HEADS}


@pytest.mark.parametrize("data", list(UNUSABLE.values()), ids=list(UNUSABLE))
def test_a_pack_naming_anything_outside_its_entry_or_not_a_pack_is_never_unpacked(
    packed: VolumeLayout,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    data: bytes,
) -> None:
    _replace_pack(packed, "nettiny", data)
    before = sorted(path.name for path in tmp_path.iterdir())
    folder = _first_start(packed, tmp_path / "cache", monkeypatch, files=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*before, "cache"])
    assert not os.path.lexists(os.path.join(os.path.dirname(folder), "escaped.py"))
    assert not os.path.lexists("/tmp/escaped.py") or os.path.getmtime("/tmp/escaped.py") < time.time() - 600
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "file by file, not from packs" in lines[0], lines


def _damaged(layout: VolumeLayout, how: str) -> None:
    pack = next(path for path in _packs(layout).iterdir() if path.name.startswith("netapp"))
    data = pack.read_bytes()
    if how == "truncated":
        _replace_pack(layout, "netapp", data[:-5])
    elif how == "wrong sha256":
        _replace_pack(layout, "netapp", data, digest="0" * 64)
    elif how == "altered byte":
        _replace_pack(layout, "netapp", data[:-3] + b"X" + data[-2:], digest=hashlib.sha256(data).hexdigest())
    elif how == "longer than its index":
        _replace_pack(layout, "netapp", data + b"# more\n")
    else:
        pack.unlink()
        pack.symlink_to(layout.root / "elsewhere.pack")
        (layout.root / "elsewhere.pack").write_bytes(data)


@pytest.mark.parametrize("how", ["truncated", "wrong sha256", "altered byte", "longer than its index", "a link"])
def test_a_torn_or_altered_pack_falls_back_to_the_file_copy(
    packed: VolumeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    _damaged(packed, how)
    _first_start(packed, tmp_path / "cache", monkeypatch, files=True)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "file by file, not from packs" in lines[0], lines


def test_packs_can_be_turned_off(packed: VolumeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local_copy.PACKS_ENV, "0")
    _first_start(packed, tmp_path / "cache", monkeypatch, files=True)


def test_entries_clash_as_the_forest_resolves_them(tmp_path: Path) -> None:
    """Two wheels shipping one file: the entry first by name wins; a folder beats a file; shared folders merge."""
    sources = {"a-1": tmp_path / "a", "b-1": tmp_path / "b"}
    for name, folder in sources.items():
        (folder / "shared").mkdir(parents=True)
        (folder / "shared" / f"{name}.py").write_text(f"N = {name!r}\n")
        (folder / "README").write_text(f"from {name}\n")
    (sources["a-1"] / "thing").write_text("a file\n")
    (sources["b-1"] / "thing").mkdir()
    (sources["b-1"] / "thing" / "x.py").write_text("X = 1\n")
    os.symlink("shared/b-1.py", sources["b-1"] / "alias.py")
    write_packs(sources, tmp_path / "packs", threads=2)
    found = {
        entry: (str(tmp_path / "packs" / name), size, digest)
        for name in os.listdir(tmp_path / "packs")
        for entry, size, digest in [local_copy.parse_pack_name(name)]  # type: ignore[misc]
    }
    target = tmp_path / "copy"
    target.mkdir()
    files, _ = local_copy.PackUnpack(found, str(target), 1 << 30, time.monotonic() + 60).run()
    assert (target / "README").read_text() == "from a-1\n"
    assert (target / "thing" / "x.py").is_file()
    assert sorted(os.listdir(target / "shared")) == ["a-1.py", "b-1.py"]
    assert os.readlink(target / "alias.py") == "shared/b-1.py"
    assert files == 4  # README once, shared/ twice, thing/x.py: no losing copy (links are not counted)


def test_gc_removes_a_pack_with_its_entry_and_old_orphans(tmp_path: Path) -> None:
    store, packs = tmp_path / "store", tmp_path / "packs"
    store.mkdir()
    packs.mkdir()
    for entry in ("kept-1", "removed-1"):
        (store / entry).mkdir()
    names = {entry: local_copy.pack_name(entry, 10, "a" * 64) for entry in ("kept-1", "removed-1", "old-1", "young-1")}
    for name in [*names.values(), ".tmp-old-1-abcd", ".tmp-young-1-abcd", "notes.txt"]:
        (packs / name).write_text("x")
    old = time.time() - 7 * 3600
    for name in (names["old-1"], ".tmp-old-1-abcd", "notes.txt"):
        os.utime(packs / name, (old, old))
    assert remove_packs(packs, store, removed=["removed-1"]) == 3
    assert sorted(os.listdir(packs)) == sorted([names["kept-1"], names["young-1"], ".tmp-young-1-abcd", "notes.txt"])


# -- on the simulated network volume ------------------------------------------------------------
# Kernel cache off: the counts are exact. Budgets are the measured counts with ~10% slack.
BUDGET_FIRST_START_FROM_PACKS = 258  # measured 225: 4 packs (open, read, flush, release), the record, the listings
BUDGET_FIRST_START_FILE_BY_FILE = (
    1370  # measured 1,241 (45 files in 14 folders): the fallback, and the default before packs
)
BUDGET_ACTIVATE_FIRST_START_FROM_PACKS = 545  # measured 493 (1,500 file by file)


@pytest.fixture
def netvol_options() -> dict[str, Any]:  # noqa: F811 (this module's settings)
    return {"latency_ms": 0.0, "cache_seconds": 0.0}


def _start(volume: NetVol, env: dict[str, str], cwd: Path) -> tuple[Counts, str]:
    volume.reset()
    done = subprocess.run([sys.executable, "-c", IMPORT], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return volume.reset(), done.stdout.strip()


def test_an_install_onto_a_network_volume_writes_one_whole_pack_per_entry(installed: Installed) -> None:  # noqa: F811
    packed = installed.layout
    entries = sorted(os.listdir(packed.store_dir))
    packs = sorted(os.listdir(_packs(packed)))
    assert [local_copy.parse_pack_name(name)[0] for name in packs] == entries  # type: ignore[index]
    for name in packs:
        _, size, digest = local_copy.parse_pack_name(name)  # type: ignore[misc]
        data = (_packs(packed) / name).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == digest


def test_budget_first_start_from_packs(installed: Installed, netvol: NetVol, tmp_path: Path) -> None:  # noqa: F811
    variables = consumer_env(layout=installed.layout, project=PROJECT, python_version=PY, mount=None).variables
    env = {"PATH": os.environ["PATH"], **variables}
    packs, imported = _start(netvol, env | {"VOLUME_CLI_LOCAL_CACHE": str(tmp_path / "a")}, tmp_path)
    files, again = _start(
        netvol, env | {"VOLUME_CLI_LOCAL_CACHE": str(tmp_path / "b"), local_copy.PACKS_ENV: "0"}, tmp_path
    )
    assert imported.startswith(str(tmp_path / "a")) and again.startswith(str(tmp_path / "b"))
    print(f"from packs {packs}\nfile by file {files}")
    assert packs["open"] < files["open"] and packs.total < files.total
    assert packs.total <= BUDGET_FIRST_START_FROM_PACKS, packs
    assert files.total <= BUDGET_FIRST_START_FILE_BY_FILE, files


def test_budget_activate_first_start_from_packs(installed: Installed, netvol: NetVol, tmp_path: Path) -> None:  # noqa: F811
    runtime = write_runtime_copy(installed.layout).parent
    code = _ACTIVATE.format(project=PROJECT) + "print(netapp.core.__file__)\n"
    command = [sys.executable, "-c", code, str(runtime), str(installed.layout.root)]
    netvol.reset()
    env = {"PATH": os.environ["PATH"], "VOLUME_CLI_LOCAL_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    counts = netvol.reset()
    assert done.returncode == 0 and done.stderr == "" and done.stdout.startswith(str(tmp_path / "cache")), done.stderr
    print(f"activate() first start {counts}")
    assert counts.total <= BUDGET_ACTIVATE_FIRST_START_FROM_PACKS, counts


def test_origin_relative_native_libraries_load_from_a_copy_made_of_packs(
    layout: VolumeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_worker_local_copy import _wheels_reaching_each_other_by_origin
    from tests.wheelfactory import gcc_available

    if not gcc_available():
        pytest.skip("needs gcc and Python headers")
    _wheels_reaching_each_other_by_origin(tmp_path / "wheels", tmp_path / "build")
    with IndexServer(tmp_path / "wheels") as index:
        project = Projects(tmp_path / "projects").make("origin", {"main": {"packages": ["user"]}})
        install(layout=layout, project=project, mirror=index.url, cache_dir=_uv_cache(), progress=NullProgress())
    write_packs({path.name: path for path in layout.store_dir.iterdir()}, layout.deps_dir / local_copy.PACKS)
    monkeypatch.setenv(local_copy.COPY_ENV, "1")
    monkeypatch.setattr(local_copy.TreeCopy, "run", lambda self: pytest.fail("copied file by file"))
    name = current_generation(layout, "origin", PY)
    assert name is not None
    generation = os.path.realpath(generation_dir(layout, "origin", PY, name))
    cache = tmp_path / "cache"
    folder = local_copy.local_generation(generation, project="origin", python_version=PY, cache=str(cache))
    assert folder.startswith(str(cache))
    variables = consumer_env(layout=layout, project="origin", python_version=PY, mount=None).variables
    environment = {**os.environ, **variables, local_copy.COPY_ENV: "1", "VOLUME_CLI_LOCAL_CACHE": str(cache)}
    code = "import user; print(user.value(), user.__file__)"
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split() == ["21", str(Path(folder) / "user" / "__init__.py")]


def test_an_entry_packed_before_keeps_its_pack(packed: VolumeLayout) -> None:
    before = sorted(os.listdir(_packs(packed)))
    write_packs({path.name: path for path in packed.store_dir.iterdir()}, _packs(packed), threads=2)
    assert sorted(os.listdir(_packs(packed))) == before


@pytest.mark.parametrize(("variable", "why"), [(local_copy.TIMEOUT_ENV, "time limit"), (local_copy.MAX_MB_ENV, "MB")])
def test_a_time_limit_or_a_ceiling_while_unpacking_means_the_volume_path(
    packed: VolumeLayout,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    why: str,
) -> None:
    monkeypatch.setenv(local_copy.COPY_ENV, "1")
    monkeypatch.setenv(variable, "0")
    if variable == local_copy.MAX_MB_ENV:  # past the record's check, as when the record undercounts
        monkeypatch.setattr(local_copy, "_recorded_entries", lambda generation: None)
        monkeypatch.setattr(local_copy, "_usable_packs", _packs_of_every_entry(packed))
    generation = _generation(packed)
    cache = tmp_path / "cache"
    assert local_copy.local_generation(generation, project=PROJECT, python_version=PY, cache=str(cache)) == generation
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and why in lines[0] and "importing from the volume" in lines[0], lines
    copies = Path(local_copy.copies_folder(str(cache), generation, PROJECT, PY))
    name = os.path.basename(generation)
    # Over the ceiling by what the packs hold: later starts skip at once, without reading them again.
    noted = [f"{name}{local_copy.SKIP_SUFFIX}"] if variable == local_copy.MAX_MB_ENV else []
    assert sorted(path.name for path in copies.iterdir()) == sorted([f"{name}.lock", *noted])


def _packs_of_every_entry(layout: VolumeLayout) -> Any:
    found = {
        parsed[0]: (str(_packs(layout) / name), parsed[1], parsed[2])
        for name in os.listdir(_packs(layout))
        for parsed in [local_copy.parse_pack_name(name)]
        if parsed is not None
    }
    return lambda generation, entries: found


@pytest.mark.parametrize("how", [None, "truncated", "altered byte", "longer than its index"])
def test_big_packs_read_in_parallel_segments_are_checked_the_same(
    packed: VolumeLayout,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    how: str | None,
) -> None:
    monkeypatch.setattr(local_copy, "SEGMENT_BYTES", 256)  # every pack here is "big": many segments
    if how is not None:
        _damaged(packed, how)
    _first_start(packed, tmp_path / "cache", monkeypatch, files=how is not None)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == (how is not None), lines


def test_a_first_start_reads_every_pack_into_a_few_reused_buffers(
    packed: VolumeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy reads a big pack's segments into buffers it reuses, and writes files from them without a copy each;
    the indexes come first, without reading any pack ahead.

    A new buffer per read faulted fresh pages in for every byte of the generation (on a VM that
    hands freed memory back to its host, each a host fault too): 360 MB of packs cost ~0.5 s more.
    """
    monkeypatch.setattr(local_copy, "SEGMENT_BYTES", 64)  # every pack here is "big": many segments each
    monkeypatch.setattr(local_copy, "PACK_CHUNK", 64)  # the index is read in chunks: the rest is left to segments
    buffers: dict[int, type] = {}
    reads: list[int] = []
    original, plan = local_copy._read_segment, local_copy.PackUnpack._plan
    read_before_unpacking: list[int] = []

    def read_segment(fd: int, buffer: mmap.mmap, offset: int) -> tuple[mmap.mmap, int]:
        buffers[id(buffer)] = type(buffer)
        done = original(fd, buffer, offset)
        reads.append(done[1])
        return done

    def planned(self: local_copy.PackUnpack) -> list[str]:
        read_before_unpacking.append(len(reads))  # every index is read by now
        return plan(self)

    monkeypatch.setattr(local_copy, "_read_segment", read_segment)
    monkeypatch.setattr(local_copy.PackUnpack, "_plan", planned)
    _first_start(packed, tmp_path / "cache", monkeypatch, files=False)
    packs = len(list(_packs(packed).iterdir()))
    assert len(reads) >= 3 * packs * (local_copy.SEGMENTS_AHEAD + 1), "the test needs packs of many segments"
    # Each pack holds at most SEGMENTS_AHEAD read ahead and the one it writes from, whatever its size.
    assert len(buffers) <= packs * (local_copy.SEGMENTS_AHEAD + 1)
    # Not bytearrays, which the process zeroes before the reads fault their pages in.
    assert set(buffers.values()) == {mmap.mmap}
    # The indexes are read without read-ahead: segments are read once unpacking starts.
    assert read_before_unpacking == [0]
