"""Issue 8: bytecode is compiled entry by entry and each entry is published while the next ones compile.

The entries must come out exactly as when the whole staged install was compiled before anything was
published (``VOLUME_CLI_TEST_COMPILE_FIRST=1`` keeps that order): same files, same pyc bytes, same
manifests and packs. The overlap itself is proven by the order of events, never by a timing.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deps.helpers import PY, import_values, run_install_subprocess
from tests.helpers import Projects, command_lines_naming
from tests.netvol.fixture import netvol, netvol_options  # noqa: F401 (fixtures)
from tests.netvol.mount import NetVol
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.deps import bytecode, entries, install, publish, scratch
from volume_cli.deps.documents import ENTRY_MANIFEST
from volume_cli.deps.faults import CRASH_ENV
from volume_cli.errors import SubprocessError
from volume_cli.layout import VolumeLayout
from volume_cli.local_copy import PACK_MAGIC, PACKS, parse_pack_name
from volume_cli.progress import NullProgress

install_module = importlib.import_module("volume_cli.deps.install")  # the name deps.install is the function

# The corners the old order got right by construction: modules at the top level sharing one
# __pycache__, a namespace package split over two wheels, a file only Python 2 compiles, an entry
# without sources, and entries of very different sizes.
WHEELS: dict[str, dict[str, str]] = {
    "big": {
        f"big/sub{folder}/m{number}.py": f"VALUE = {folder * 100 + number}\n"
        for folder in range(4)
        for number in range(15)
    }
    | {"big/__init__.py": "from big.sub0 import m0\n", **{f"big/sub{folder}/__init__.py": "" for folder in range(4)}},
    "onemod": {"onemod.py": "ONE = 1\n"},
    "twomod": {"twomod.py": "TWO = 2\n", "twomod_data/notes.txt": "not code\n"},
    "nsa": {"ns/a/__init__.py": "A = 'a'\n"},
    "nsb": {"ns/b/__init__.py": "B = 'b'\n", "ns/b/old.py": "print 'python 2'\n"},
    "nodata": {"nodata_files/readme.txt": "no sources here\n", "nodata_files/table.csv": "a,b\n1,2\n"},
    "mid": {f"mid/m{number}.py": f"X = {number}\n" for number in range(8)} | {"mid/__init__.py": ""},
}
PACKAGES = sorted(WHEELS)


@pytest.fixture
def wheel_index(tmp_path: Path) -> Iterator[IndexServer]:
    for name, files in WHEELS.items():
        build_wheel(tmp_path / "wheels", name, "1.0", files=files)
    with IndexServer(tmp_path / "wheels") as server:
        yield server


@pytest.fixture
def uv_cache() -> Path:
    return Path(os.environ["UV_CACHE_DIR"])


@pytest.fixture
def copied_not_renamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The staging folder as if on another disk than the volume (a pod): entries are copied, not renamed,
    and under one name in every run, so pycs (which name their source's staged path) can be compared."""
    real = install_module.new_local_staging
    monkeypatch.setattr(scratch, "staging_name", lambda: "fixed-staging-name")

    def other_disk(folder: Path, layout: VolumeLayout) -> entries.Staging:
        return dataclasses.replace(real(folder, layout), same_disk_as_volume=False)

    monkeypatch.setattr(install_module, "new_local_staging", other_disk)


def _install(layout: VolumeLayout, projects: Projects, index: IndexServer, cache: Path) -> Any:
    layout.root.mkdir(parents=True, exist_ok=True)
    project = projects.make("demo", {"main": {"packages": PACKAGES}})
    return install(layout=layout, project=project, mirror=index.url, cache_dir=cache, progress=NullProgress())


def _tree(folder: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every path under ``folder``: (mode, bytes or link text); the manifest as its parsed document."""
    found: dict[str, tuple[int, bytes | str]] = {}
    for parent, folders, files in os.walk(folder):
        for name in folders + files:
            path = Path(parent) / name
            relative = str(path.relative_to(folder))
            info = path.lstat()
            if path.is_symlink():
                found[relative] = (info.st_mode, os.readlink(path))
            elif path.is_file():
                data = path.read_bytes()
                if name == ENTRY_MANIFEST:
                    document = json.loads(data)
                    document.pop("created_at", None)
                    data = json.dumps(document, sort_keys=True).encode()
                found[relative] = (info.st_mode, data)
            else:
                found[relative] = (info.st_mode, "<folder>")
    return found


@pytest.mark.parametrize("in_process", [False, True], ids=["worker-pool", "in-process"])
def test_entries_are_identical_to_compiling_everything_before_publishing(
    in_process: bool,
    tmp_path: Path,
    wheel_index: IndexServer,
    uv_cache: Path,
    copied_not_renamed: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not in_process:
        monkeypatch.setattr(bytecode, "IN_PROCESS_MAX_SOURCES", 0)
    projects = Projects(tmp_path / "projects")
    old, new = VolumeLayout(tmp_path / "old"), VolumeLayout(tmp_path / "new")
    monkeypatch.setenv(bytecode.COMPILE_FIRST_ENV, "1")
    _install(old, projects, wheel_index, uv_cache)
    monkeypatch.delenv(bytecode.COMPILE_FIRST_ENV)
    _install(new, projects, wheel_index, uv_cache)

    assert sorted(os.listdir(new.store_dir)) == sorted(os.listdir(old.store_dir))
    assert len(os.listdir(new.store_dir)) == len(PACKAGES)
    for entry in os.listdir(old.store_dir):
        assert _tree(new.store_dir / entry) == _tree(old.store_dir / entry), entry
    pycs = [path for path in _tree(new.store_dir) if path.endswith(".pyc")]
    assert len(pycs) == sum(path.endswith(".py") for files in WHEELS.values() for path in files) - 1  # not py2
    assert any(path.split("/")[1] == "__pycache__" for path in pycs)  # top-level modules' bytecode is stored
    assert _packs(new) == _packs(old) and len(_packs(new)) == len(PACKAGES)
    path = new.deps_path("demo", PY)
    assert import_values(path, {"one": "onemod.ONE", "b": "ns.b.B", "v": "big.sub0.m0.VALUE"}) == {
        "one": 1,
        "b": "b",
        "v": 0,
    }


def _packs(layout: VolumeLayout) -> dict[str, tuple[object, bytes]]:
    """Each entry's pack: its index without the files' mtimes (those of this run's local copies), its data."""
    found: dict[str, tuple[object, bytes]] = {}
    for name in os.listdir(layout.deps_dir / PACKS):
        parsed = parse_pack_name(name)
        assert parsed is not None, name
        data = (layout.deps_dir / PACKS / name).read_bytes()
        assert data.startswith(PACK_MAGIC)
        length, _, rest = data[len(PACK_MAGIC) :].partition(b"\n")
        index = json.loads(rest[: int(length)])
        index["files"] = [item[:3] for item in index["files"]]
        found[parsed[0]] = (index, rest[int(length) :])
    return found


def _record_events(
    monkeypatch: pytest.MonkeyPatch,
    events: list[str],
    *,
    hold_last: bool = False,
    hold_until_started: bool = False,
    gate: threading.Event | None = None,
) -> None:
    """Record "compiled <entry>" and "published <entry>". With ``hold_last`` the last entry's compile is
    reported only once an entry is published (a pipeline goes on; compile-then-publish would not);
    with ``hold_until_started`` no entry is reported before the entries' sources were copied; with
    ``gate`` every entry after the first is reported only once ``gate`` is set."""
    real_compile = entries.compile_entries
    real_copy = publish.Publisher._copy
    published = threading.Event()
    started = threading.Event()

    def compile_entries(folders: list[Path], *, on_line: Callable[[int | None], None], **kwargs: Any) -> None:
        def line(index: int | None) -> None:
            if index is not None:
                done = [event for event in events if event.startswith("compiled")]
                if hold_last and len(done) == len(folders) - 1:
                    assert published.wait(timeout=20), "no entry was published while the last one compiled"
                if hold_until_started:
                    assert started.wait(timeout=20), "no entry's sources were copied while they compiled"
                if gate is not None and done:
                    assert gate.wait(timeout=20)
                events.append(f"compiled {folders[index].name.split('-')[0]}")
            on_line(index)

        real_compile(folders, on_line=line, **kwargs)

    def copy(self: publish.Publisher, batch: dict[str, Path]) -> None:
        real_copy(self, batch)
        # An entry still being compiled is copied but for its bytecode ("started"), the rest once compiled.
        events.extend(
            f"{'started' if name in self.done else 'published'} {name.split('-')[0]}" for name in sorted(batch)
        )
        if any(name not in self.done for name in batch):
            published.set()
        if any(name in self.done for name in batch):
            started.set()

    monkeypatch.setattr(entries, "compile_entries", compile_entries)
    monkeypatch.setattr(publish.Publisher, "_copy", copy)


def test_the_first_entry_is_published_before_the_last_one_is_compiled(
    tmp_path: Path,
    wheel_index: IndexServer,
    uv_cache: Path,
    copied_not_renamed: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bytecode, "IN_PROCESS_MAX_SOURCES", 0)
    events: list[str] = []
    _record_events(monkeypatch, events, hold_last=True, hold_until_started=True)
    _install(VolumeLayout(tmp_path / "volume"), Projects(tmp_path / "projects"), wheel_index, uv_cache)

    compiled = [event for event in events if event.startswith("compiled")]
    assert len(compiled) == len(PACKAGES) and len([e for e in events if e.startswith("published")]) == len(PACKAGES)
    assert compiled[0] == "compiled nodata"  # no sources: published while the others compile
    first_published = next(number for number, event in enumerate(events) if event.startswith("published"))
    assert first_published < events.index(compiled[-1])
    for name in PACKAGES:  # never published whole before its bytecode is written
        assert events.index(f"compiled {name}") < events.index(f"published {name}")
    assert events.index("started big") < events.index("compiled big")  # its sources went first


def test_compiled_in_process_each_entry_is_published_whole_once_compiled(
    tmp_path: Path,
    wheel_index: IndexServer,
    uv_cache: Path,
    copied_not_renamed: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A few sources are compiled here: their sources are not copied ahead (creates in one folder queue on its
    lock, so sources first and then their pycs take longer than both folders filled at once)."""
    monkeypatch.setattr(bytecode, "IN_PROCESS_MAX_SOURCES", 10_000)
    events: list[str] = []
    _record_events(monkeypatch, events, hold_last=True)
    _install(VolumeLayout(tmp_path / "volume"), Projects(tmp_path / "projects"), wheel_index, uv_cache)

    assert not [event for event in events if event.startswith("started")], events
    compiled = [event for event in events if event.startswith("compiled")]
    assert len(compiled) == len(PACKAGES) and len([e for e in events if e.startswith("published")]) == len(PACKAGES)
    first_published = next(number for number, event in enumerate(events) if event.startswith("published"))
    assert first_published < events.index(compiled[-1])  # still a pipeline: published while the next compile
    for name in PACKAGES:
        assert events.index(f"compiled {name}") < events.index(f"published {name}")


def _no_process_mentions(text: str) -> bool:
    """No process but the detached ``rm -rf`` removing the scratch folder (deps/scratch.py) names ``text``."""
    return all(arguments[:2] == [b"rm", b"-rf"] for arguments in command_lines_naming(text).values())


def _install_with_compiler(
    script: str, tmp_path: Path, wheel_index: IndexServer, uv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> SubprocessError:
    """Install with ``script`` as the compile subprocess; it must fail the install and leave nothing."""
    monkeypatch.setattr(bytecode, "IN_PROCESS_MAX_SOURCES", 0)
    monkeypatch.setattr(bytecode, "_COMPILE_ENTRIES", script)
    layout = VolumeLayout(tmp_path / "volume")
    with pytest.raises(SubprocessError, match="compile-bytecode") as raised:
        _install(layout, Projects(tmp_path / "projects"), wheel_index, uv_cache)
    _assert_nothing_left(layout)
    return raised.value


def test_a_failed_compile_stops_publishing_and_leaves_nothing(
    tmp_path: Path,
    wheel_index: IndexServer,
    uv_cache: Path,
    copied_not_renamed: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One entry reported done (so publishing has begun), then the compiler dies as a broken interpreter would.
    failing = "import sys\nprint('compiled 1', flush=True)\nsys.exit('compile-bytecode exploded')\n"
    error = _install_with_compiler(failing, tmp_path, wheel_index, uv_cache, monkeypatch)
    assert "compile-bytecode failed" in str(error)
    assert error.log_path is not None and "exploded" in Path(error.log_path).read_text()


def test_a_stuck_compile_is_stopped_within_its_bound_and_leaves_nothing(
    tmp_path: Path,
    wheel_index: IndexServer,
    uv_cache: Path,
    copied_not_renamed: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pool that never finishes (as one did when its terminate() deadlocked): one entry, then nothing.
    stuck = "import time\nprint('compiled 1', flush=True)\ntime.sleep(600)\n"
    monkeypatch.setattr(bytecode, "COMPILE_FLOOR_SECONDS", 3.0)
    monkeypatch.setattr(bytecode, "COMPILE_SECONDS_PER_SOURCE", 0.0)
    started = time.monotonic()
    _install_with_compiler(stuck, tmp_path, wheel_index, uv_cache, monkeypatch)
    assert time.monotonic() - started < 60


def test_the_compile_bound_grows_with_the_sources(tmp_path: Path) -> None:
    for number in range(40):
        (tmp_path / f"m{number}.py").write_text("")
    (tmp_path / "data.txt").write_text("")
    sources = len(bytecode._sources(tmp_path))  # what compile_entries counts: the .py files only
    assert bytecode.compile_bound(sources) == bytecode.COMPILE_FLOOR_SECONDS + 40 * bytecode.COMPILE_SECONDS_PER_SOURCE


def test_a_failed_publish_stops_the_compile_and_leaves_nothing(
    tmp_path: Path,
    wheel_index: IndexServer,
    uv_cache: Path,
    copied_not_renamed: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bytecode, "IN_PROCESS_MAX_SOURCES", 0)
    monkeypatch.setattr(bytecode, "CHUNK_SOURCES", 1)  # many lines: the compile hears of the failure early
    real_copy_file = publish.copy_file
    real_fail = publish.Publisher.fail
    failed = threading.Event()

    def failing_copy(source: Path, destination: Path | str, mode: int, **kwargs: Any) -> None:
        if "table.csv" in str(destination):  # of the entry without sources: published first
            raise OSError(28, "No space left on device (simulated)")
        real_copy_file(source, destination, mode, **kwargs)

    def fail(self: publish.Publisher, failure: BaseException) -> None:
        real_fail(self, failure)
        # Entries' lines go on once the publisher knows: lines the pool printed meanwhile are read at once
        # after the gate, and gated on the raise they would race the publisher thread's bookkeeping.
        failed.set()

    monkeypatch.setattr(publish, "copy_file", failing_copy)
    monkeypatch.setattr(publish.Publisher, "fail", fail)
    events: list[str] = []
    _record_events(monkeypatch, events, gate=failed)
    layout = VolumeLayout(tmp_path / "volume")
    with pytest.raises(OSError, match="No space left"):
        _install(layout, Projects(tmp_path / "projects"), wheel_index, uv_cache)
    # The compile heard of the failure at its next line and stopped before reporting every entry.
    assert len([event for event in events if event.startswith("compiled")]) < len(PACKAGES)
    _assert_nothing_left(layout)


def _assert_nothing_left(layout: VolumeLayout) -> None:
    assert not os.listdir(layout.deps_dir / ".staging")
    assert not layout.store_dir.exists() or not os.listdir(layout.store_dir)
    ours = ("volume-cli-publish", "volume-cli-packs", "volume-cli-spread")
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith(ours)]
    # This test's scratch folder, not the fixed staging name: another test's compile may run meanwhile.
    ours = scratch.scratch_dir(layout, Path(os.environ["UV_CACHE_DIR"]))
    assert _no_process_mentions(str(ours)), "a compile process outlived the install"


def test_a_kill_while_compiling_and_publishing_leaves_no_compiler_and_the_rerun_converges(
    netvol: NetVol,  # noqa: F811
    tmp_path: Path,
    wheel_index: IndexServer,
    uv_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layout = VolumeLayout(netvol.path / "volume")  # another disk than the scratch folder, as on a pod
    layout.root.mkdir()
    scratch_folder = tmp_path / "scratch"
    monkeypatch.setenv(scratch.SCRATCH_ENV, str(scratch_folder))
    project = Projects(tmp_path / "projects").make("demo", {"main": {"packages": PACKAGES}})
    killed = run_install_subprocess(
        layout, project.folder, mirror=wheel_index.url, cache=uv_cache, env={CRASH_ENV: "first-entry-compiled"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert not layout.store_dir.exists() or not os.listdir(layout.store_dir)
    # The staged sources are still hard links into uv's cache; their bytecode is a new file beside them.
    (staged,) = scratch_folder.glob("*/entries/big-*/big/__init__.py")
    assert staged.stat().st_nlink > 1 and (staged.parent / "__pycache__").is_dir()
    assert _no_process_mentions(str(scratch_folder)), "the compile outlived the killed install"

    install(layout=layout, project=project, mirror=wheel_index.url, cache_dir=uv_cache, progress=NullProgress())
    assert not os.listdir(layout.deps_dir / ".staging")
    stored = os.listdir(layout.store_dir)
    assert len(stored) == len(PACKAGES)
    assert all((layout.store_dir / entry / ENTRY_MANIFEST).is_file() for entry in stored)
    packed = [parse_pack_name(name) for name in os.listdir(layout.deps_dir / PACKS)]
    assert sorted(parsed[0] for parsed in packed if parsed is not None) == sorted(stored)
    assert not list(uv_cache.rglob("*.pyc"))
    assert import_values(layout.deps_path("demo", PY), {"two": "twomod.TWO"}) == {"two": 2}


def test_what_is_written_while_an_entry_compiles_is_copied_only_once_it_is_added(tmp_path: Path) -> None:
    """Its pycs and its manifest are written through temp files: copied early, a temp file would land
    in the entry (or vanish under the copy); they go with the rest of the entry once it is added."""
    entry = tmp_path / "src" / "e1-1.0"
    (entry / "pkg" / "__pycache__").mkdir(parents=True)
    (entry / "pkg" / "mod.py").write_text("X = 1\n")
    (entry / "pkg" / "__pycache__" / "mod.cpython-311.pyc.1234").write_bytes(b"half a pyc")
    (entry / f".{ENTRY_MANIFEST}.tmp-1-abcdef12").write_text('{"whole": true}')
    (tmp_path / "dest").mkdir()
    with publish.Publisher(tmp_path / "dest", threads=2) as publisher:
        publisher.start({entry.name: entry})
        for _ in range(1000):
            if (tmp_path / "dest" / entry.name / "pkg" / "mod.py").exists():
                break
            time.sleep(0.01)
        (entry / "pkg" / "__pycache__" / "mod.cpython-311.pyc.1234").rename(entry / "pkg" / "__pycache__" / "mod.pyc")
        (entry / f".{ENTRY_MANIFEST}.tmp-1-abcdef12").rename(entry / ENTRY_MANIFEST)
        publisher.add({entry.name: entry})
        copied = publisher.finish()
    assert copied.files == 3
    assert _tree(tmp_path / "dest" / entry.name) == _tree(entry)
