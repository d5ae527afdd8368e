"""Big native libraries stay out of packs: copied from the store under the ceiling, linked there over it.

A CUDA build of torch is 5.3 GB, 4.7 GB of it in 30 native libraries of 16 MB and more, of which
an import maps in a small part. Each entry's pack lists such libraries but leaves their bytes in the
store entry (pack format 2). Under the copy's ceiling a worker's first start copies them from the
store; over it, the copy holds every other file and links those libraries to the store, so the
generation still imports from local disk but for the pages the loader maps. The libraries here
reach each other by ``$ORIGIN`` as torch's and nvidia's do, through the link.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Projects
from tests.netvol.fixture import netvol, netvol_options  # noqa: F401 (fixtures)
from tests.netvol.mount import Counts, NetVol
from tests.test_netvol_budgets import _uv_cache
from tests.test_worker_first_start import _tree
from tests.wheelfactory import (
    IndexServer,
    build_wheel,
    compile_extension,
    compile_shared_library,
    extension_source,
    gcc_available,
)
from volume_cli import local_copy
from volume_cli.consumer_env import consumer_env
from volume_cli.deps import install
from volume_cli.deps.forest import current_generation, generation_dir
from volume_cli.deps.publish import write_packs
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PROJECT = "big"
LIBRARY = "bigcore/lib/libbig.so"
BIG = local_copy.LIBRARY_MIN_BYTES

# Over LIBRARY_MIN_BYTES by what it holds: an exported constant the code reads, so nothing drops it.
_BIG_LIBRARY = """
extern int small_value(void);
const char big_padding[%d] = {1};
int vendor_value(void) { return small_value() + *(const volatile char *)big_padding; }
"""


def _wheels(folder: Path, scratch: Path) -> None:
    """smalldep plays nvidia's small libraries; bigcore/lib/libbig.so plays libtorch_cuda.so; user plays torch._C.

    libbig.so finds libsmall.so by ``$ORIGIN/../../smalldep/lib``, across two distributions, as
    libtorch_cuda.so finds nvidia's libraries; user's extension finds libbig.so by ``$ORIGIN``.
    """
    small = compile_shared_library("int small_value(void) { return 20; }\n", scratch / "libsmall.so")
    files: dict[str, str | bytes] = {"smalldep/__init__.py": "", "smalldep/lib/libsmall.so": small.read_bytes()}
    build_wheel(folder, "smalldep", "1.0", tag="py3-none-manylinux_2_17_x86_64", files=files)
    big = compile_shared_library(
        _BIG_LIBRARY % (BIG + 4096),
        scratch / "big" / "libbig.so",
        rpath="$ORIGIN/../../smalldep/lib",
        libraries=[small],
    )
    assert big.stat().st_size > BIG
    files = {"bigcore/__init__.py": "", LIBRARY: big.read_bytes(), "bigcore/lib/data.bin": os.urandom(BIG + 1)}
    build_wheel(folder, "bigcore", "1.0", tag="py3-none-manylinux_2_17_x86_64", requires=["smalldep"], files=files)
    extension = compile_extension(
        "_C", extension_source("_C", "vendor_value()"), scratch / "ext", rpath="$ORIGIN/../bigcore/lib", libraries=[big]
    )
    files = {"user/__init__.py": "from ._C import value\n", "user/_C.abi3.so": extension.read_bytes()}
    tag = f"cp{PY.replace('.', '')}-abi3-manylinux_2_17_x86_64"
    build_wheel(folder, "user", "1.0", tag=tag, requires=["bigcore"], files=files)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not gcc_available():
        pytest.skip("needs gcc and Python headers")
    tmp = tmp_path_factory.mktemp("libraries")
    _wheels(tmp / "wheels", tmp / "build")
    return tmp / "wheels"


@pytest.fixture
def volume(wheels: Path, tmp_path: Path) -> VolumeLayout:
    """An installed volume, its packs written as publishing onto a network volume does."""
    layout = VolumeLayout(tmp_path / "volume")
    layout.root.mkdir()
    with IndexServer(wheels) as index:
        project = Projects(tmp_path / "projects").make(PROJECT, {"main": {"packages": ["user"]}})
        install(layout=layout, project=project, mirror=index.url, cache_dir=_uv_cache(), progress=NullProgress())
    write_packs({path.name: path for path in layout.store_dir.iterdir()}, layout.deps_dir / local_copy.PACKS)
    return layout


def _generation(layout: VolumeLayout) -> str:
    name = current_generation(layout, PROJECT, PY)
    assert name is not None
    return os.path.realpath(generation_dir(layout, PROJECT, PY, name))


def _entry(layout: VolumeLayout, prefix: str) -> Path:
    return next(path for path in layout.store_dir.iterdir() if path.name.startswith(prefix))


def _pack(layout: VolumeLayout, prefix: str) -> Path:
    return next(path for path in (layout.deps_dir / local_copy.PACKS).iterdir() if path.name.startswith(prefix))


def _index(pack: Path) -> tuple[bytes, dict[str, list[list[object]]]]:
    with open(pack, "rb") as stream:
        magic = stream.readline()
        return magic, json.loads(stream.read(int(stream.readline())))


def _first_start(layout: VolumeLayout, cache: Path, monkeypatch: pytest.MonkeyPatch, *, max_mb: float) -> str:
    monkeypatch.setenv(local_copy.COPY_ENV, "1")  # the volume here is on the cache's disk
    monkeypatch.setenv(local_copy.MAX_MB_ENV, str(max_mb))
    generation = _generation(layout)
    return local_copy.local_generation(generation, project=PROJECT, python_version=PY, cache=str(cache))


def _packed_megabytes(layout: VolumeLayout) -> float:
    """Over what every pack holds, under that plus the library: the ceiling that makes the copy link it."""
    packed = sum(path.stat().st_size for path in (layout.deps_dir / local_copy.PACKS).iterdir())
    return (packed + BIG // 2) / (1 << 20)


def test_a_pack_lists_its_big_libraries_and_leaves_their_bytes_in_the_entry(volume: VolumeLayout) -> None:
    magic, index = _index(_pack(volume, "bigcore"))
    assert magic == local_copy.PACK_MAGIC_LIBRARIES
    library = _entry(volume, "bigcore") / LIBRARY
    assert index["libraries"] == [[LIBRARY, 0o755, library.stat().st_size, library.stat().st_mtime_ns]]
    assert "bigcore/lib/data.bin" in [item[0] for item in index["files"]]  # big, but not a library: packed
    assert LIBRARY not in [item[0] for item in index["files"]]
    assert _pack(volume, "bigcore").stat().st_size < library.stat().st_size  # its bytes are not in it
    magic, index = _index(_pack(volume, "smalldep"))  # a small library stays in a pack of format 1
    assert magic == local_copy.PACK_MAGIC and "libraries" not in index


def test_under_the_ceiling_the_libraries_are_copied_from_the_store(
    volume: VolumeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(local_copy, "SEGMENT_BYTES", 1 << 20)  # many segments in flight per library
    monkeypatch.setattr(local_copy.TreeCopy, "run", lambda self: pytest.fail("copied file by file"))
    folder = _first_start(volume, tmp_path / "cache", monkeypatch, max_mb=2048)
    assert folder.startswith(str(tmp_path / "cache"))
    assert _tree(folder) == _tree(_generation(volume))  # byte for byte, modes kept
    copied = Path(folder) / LIBRARY
    assert (
        not copied.is_symlink()
        and copied.stat().st_mtime_ns == (_entry(volume, "bigcore") / LIBRARY).stat().st_mtime_ns
    )
    assert json.loads((Path(folder) / local_copy.MARKER).read_text())["linked"] == 0
    assert capsys.readouterr().err == ""


def test_over_the_ceiling_the_libraries_are_linked_and_load_through_origin(
    volume: VolumeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ceiling = _packed_megabytes(volume)
    cache = tmp_path / "cache"
    folder = _first_start(volume, cache, monkeypatch, max_mb=ceiling)
    assert folder.startswith(str(cache)), capsys.readouterr().err
    linked = Path(folder) / LIBRARY
    assert linked.is_symlink() and os.readlink(linked) == os.path.realpath(_entry(volume, "bigcore") / LIBRARY)
    assert not (Path(folder) / "bigcore/lib/data.bin").is_symlink()  # not a library: copied
    assert _tree(folder) == _tree(_generation(volume))  # what an import sees is the same
    marker = json.loads((Path(folder) / local_copy.MARKER).read_text())
    assert marker["linked"] == 1 and marker["bytes"] < 2 * BIG  # data.bin (BIG + 1) but not the library
    assert capsys.readouterr().err == ""
    # A worker through `env` output: the copy's extension loads the linked library, which finds
    # libsmall.so in the copy by $ORIGIN/../../smalldep/lib: the link's folder, not the store's.
    variables = consumer_env(layout=volume, project=PROJECT, python_version=PY, mount=None).variables
    base = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment = {**base, **variables, local_copy.COPY_ENV: "1", "VOLUME_CLI_LOCAL_CACHE": str(cache)}
    environment[local_copy.MAX_MB_ENV] = str(ceiling)
    code = "import user, smalldep; print(user.value(), user.__file__, smalldep.__file__)"
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    value, user, smalldep = done.stdout.split()
    assert value == "21" and user.startswith(folder) and smalldep.startswith(folder)
    maps = subprocess.run(
        [sys.executable, "-c", "import user; print(open('/proc/self/maps').read())"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    store = str(volume.store_dir.resolve())
    assert any(line.endswith("libbig.so") and store in line for line in maps.splitlines())  # mapped from the store
    assert not any(line.endswith("libsmall.so") and store in line for line in maps.splitlines())  # from the copy


def test_over_the_ceiling_even_without_the_libraries_means_the_volume_path(
    volume: VolumeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    generation = _generation(volume)
    assert _first_start(volume, cache, monkeypatch, max_mb=0.01) == generation
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "over the 0 MB ceiling" in lines[0], lines
    copies = Path(local_copy.copies_folder(str(cache), generation, PROJECT, PY))
    note = copies / f"{os.path.basename(generation)}{local_copy.SKIP_SUFFIX}"
    needed = int(note.read_text())
    # What the copy needs with its libraries linked (a ceiling raised to that lets it fit), not the generation's size.
    packs = (volume.deps_dir / local_copy.PACKS).iterdir()
    assert needed == sum(int(str(item[2])) for pack in packs for item in _index(pack)[1]["files"])
    assert not [path for path in copies.iterdir() if not path.name.endswith((".lock", local_copy.SKIP_SUFFIX))]


@pytest.fixture
def damaged(volume: VolumeLayout, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[VolumeLayout, str]:
    """The volume with bigcore's library no longer what its pack lists."""
    library = _entry(volume, "bigcore") / LIBRARY
    original = library.read_bytes()
    how: str = request.param
    if how == "shorter":
        library.write_bytes(original[:-1])
    elif how == "a link":
        library.unlink()
        library.symlink_to(tmp_path / "libbig.so")
        (tmp_path / "libbig.so").write_bytes(original)
    else:  # its folder a link out of the volume, to a library of the same size
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "libbig.so").write_bytes(original)
        library.parent.rename(library.parent.with_name("lib-aside"))
        library.parent.symlink_to(outside)
    return volume, how


@pytest.mark.parametrize("damaged", ["shorter", "a link", "a folder linked out"], indirect=True)
@pytest.mark.parametrize("max_mb", [2048, None], ids=["copied", "linked"])
def test_a_library_that_is_not_what_its_pack_lists_is_never_used(
    damaged: tuple[VolumeLayout, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    max_mb: float | None,
) -> None:
    """The entry is then copied file by file, as its store folder shows it, or the volume path is used."""
    layout, how = damaged
    generation = _generation(layout)
    folder = _first_start(layout, tmp_path / "cache", monkeypatch, max_mb=max_mb or _packed_megabytes(layout))
    lines = capsys.readouterr().err.splitlines()
    assert lines and "copying bigcore" in lines[0] and "file by file, not from packs" in lines[0], lines
    if folder == generation:  # the file copy of bigcore is over the ceiling, or leads out of python-deps
        assert len(lines) == 2 and "importing from the volume" in lines[1], lines
        assert max_mb is None or how != "shorter"
    else:
        assert max_mb == 2048 and how == "shorter" and len(lines) == 1, lines
        assert _tree(folder) == _tree(generation)  # the shorter library, as the volume path shows it
    copied = list((tmp_path / "cache").rglob("libbig.so"))
    outside = str(tmp_path)
    assert not [path for path in copied if path.is_symlink() and os.readlink(path).startswith(outside)]


def test_a_copy_made_file_by_file_links_nothing(
    volume: VolumeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(local_copy.PACKS_ENV, "0")  # file by file: nothing is ever linked
    folder = _first_start(volume, tmp_path / "cache", monkeypatch, max_mb=2048)
    marker = json.loads((Path(folder) / local_copy.MARKER).read_text())
    assert marker["linked"] == 0 and stat.S_ISREG(os.lstat(Path(folder) / LIBRARY).st_mode)


@pytest.fixture
def netvol_options() -> dict[str, Any]:  # noqa: F811 (this module's settings)
    return {"latency_ms": 0.0, "cache_seconds": 0.0}


def test_on_a_network_volume_a_linked_library_is_read_only_where_the_loader_maps_it(
    netvol: NetVol,  # noqa: F811
    wheels: Path,
    tmp_path: Path,
) -> None:
    """The install onto the volume writes the format-2 pack; a first start that links the library reads
    a few pages of it through the loader, one that copies it reads all of its 16 MB."""
    layout = VolumeLayout(netvol.path / "volume")
    layout.root.mkdir()
    with IndexServer(wheels) as index:
        project = Projects(tmp_path / "projects").make(PROJECT, {"main": {"packages": ["user"]}})
        install(layout=layout, project=project, mirror=index.url, cache_dir=_uv_cache(), progress=NullProgress())
    assert _index(_pack(layout, "bigcore"))[0] == local_copy.PACK_MAGIC_LIBRARIES
    variables = consumer_env(layout=layout, project=PROJECT, python_version=PY, mount=None).variables
    env = {"PATH": os.environ["PATH"], **variables}
    code = "import user; print(user.value(), user.__file__)"
    starts: dict[str, tuple[Counts, str]] = {}
    for how, ceiling in (("copied", 2048.0), ("linked", _packed_megabytes(layout))):
        netvol.reset()
        cache = tmp_path / how
        started = {**env, "VOLUME_CLI_LOCAL_CACHE": str(cache), local_copy.MAX_MB_ENV: str(ceiling)}
        done = subprocess.run([sys.executable, "-c", code], env=started, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert done.stdout.split()[0] == "21" and done.stdout.split()[1].startswith(str(cache))
        starts[how] = netvol.reset(), done.stdout
    copied, linked = starts["copied"][0], starts["linked"][0]
    print(f"copied {copied}\nlinked {linked}")
    # 16 MB copied is at least 128 reads of 128 KB; the loader maps a few pages of the linked one.
    assert copied["read"] >= linked["read"] + BIG // (128 << 10) - 16, (copied, linked)
    assert linked.total < copied.total


@pytest.mark.parametrize(
    ("setting", "free_mb", "ceiling_mb"),
    [(None, 1000, 2048), (None, 20000, 10000), ("", 20000, 10000), ("512", 20000, 512), ("not a number", 100, 2048)],
)
def test_the_default_ceiling_is_the_larger_of_2048_mb_and_half_the_free_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str | None, free_mb: int, ceiling_mb: int
) -> None:
    """A CUDA torch copied whole starts faster than linked, first and later: a worker's disk with room copies it."""
    if setting is None:
        monkeypatch.delenv(local_copy.MAX_MB_ENV, raising=False)
    else:
        monkeypatch.setenv(local_copy.MAX_MB_ENV, setting)
    usage = shutil.disk_usage(tmp_path)._replace(free=free_mb << 20)
    monkeypatch.setattr(local_copy.shutil, "disk_usage", lambda path: usage)
    assert local_copy._max_bytes(str(tmp_path)) == ceiling_mb << 20


def test_sync_apply_repacks_an_entry_whose_older_pack_holds_its_big_libraries(
    volume: VolumeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A volume packed by an older volume-cli: `sync apply` rewrites only the packs that hold a big library."""
    from volume_cli.sync.apply import pack_current_generation

    _pack(volume, "bigcore").unlink()
    with monkeypatch.context() as older:
        older.setattr(local_copy, "LIBRARY_MIN_BYTES", 1 << 40)  # no library is big: packs of format 1
        entry = _entry(volume, "bigcore")
        write_packs({entry.name: entry}, volume.deps_dir / local_copy.PACKS)
    magic, index = _index(_pack(volume, "bigcore"))
    assert magic == local_copy.PACK_MAGIC and LIBRARY in [item[0] for item in index["files"]]
    others = sorted(path.name for path in (volume.deps_dir / local_copy.PACKS).iterdir() if "bigcore" not in path.name)
    assert pack_current_generation(volume, PROJECT, NullProgress()) == (1, None)
    packs = sorted(path.name for path in (volume.deps_dir / local_copy.PACKS).iterdir())
    assert [name for name in packs if "bigcore" not in name] == others  # format 1 without big libraries: kept
    assert len(packs) == len(others) + 1 and _index(_pack(volume, "bigcore"))[0] == local_copy.PACK_MAGIC_LIBRARIES
    assert pack_current_generation(volume, PROJECT, NullProgress()) == (0, None)  # nothing left to do


def test_sync_apply_that_cannot_remove_an_older_pack_reports_it_and_keeps_it(
    volume: VolumeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A volume it cannot write (read-only, permissions): a warning in the result, never a failed apply."""
    from volume_cli.sync.apply import pack_current_generation

    _pack(volume, "bigcore").unlink()
    with monkeypatch.context() as older:
        older.setattr(local_copy, "LIBRARY_MIN_BYTES", 1 << 40)
        entry = _entry(volume, "bigcore")
        write_packs({entry.name: entry}, volume.deps_dir / local_copy.PACKS)
    before = sorted(path.name for path in (volume.deps_dir / local_copy.PACKS).iterdir())

    def refused(path: Path, missing_ok: bool = False) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as read_only:
        read_only.setattr(Path, "unlink", refused)
        written, error = pack_current_generation(volume, PROJECT, NullProgress())
    assert written == 0 and error is not None and error.startswith("Permission denied (") and "sync apply" in error
    assert sorted(path.name for path in (volume.deps_dir / local_copy.PACKS).iterdir()) == before
    # Refused only there: another entry's missing pack is still written, and the refusal still reported.
    smalldep = _pack(volume, "smalldep")
    smalldep.unlink()
    unlink = Path.unlink

    def refused_for_bigcore(path: Path, missing_ok: bool = False) -> None:
        if path.name.startswith("bigcore"):
            refused(path)
        unlink(path, missing_ok=missing_ok)

    with monkeypatch.context() as refusing:
        refusing.setattr(Path, "unlink", refused_for_bigcore)
        written, error = pack_current_generation(volume, PROJECT, NullProgress())
    assert written == 1 and error is not None and error.startswith("Permission denied (")
    assert sorted(path.name for path in (volume.deps_dir / local_copy.PACKS).iterdir()) == before
