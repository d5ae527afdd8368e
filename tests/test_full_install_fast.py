"""A full install's publishing on the volume: entry packs are written while the entry files are.

Measured on the simulated volume (1 ms per operation, 1 s cache, 44-wheel set, copy_trees
alone, 32 file threads): the 44 packs (~523 MB, 1,361 operations) took 1.6-1.8 s after the
18,976 files; written beside them by PACK_THREADS threads they add no operations and
overlap the file copies (see the report of issue 8 for the timings and load).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from volume_cli.deps import publish
from volume_cli.local_copy import parse_pack_name


def _entry(folder: Path, files: int) -> Path:
    (folder / "pkg").mkdir(parents=True)
    for number in range(files):
        (folder / "pkg" / f"m{number}.py").write_text(f"VALUE = {number}\n")
    return folder


def test_packs_are_written_while_files_are_still_being_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file copy that waits for a pack to start would wait forever if packs came after the files."""
    sources = {"a-1": _entry(tmp_path / "src" / "a", 3), "b-1": _entry(tmp_path / "src" / "b", 3)}
    packing_started = threading.Event()
    write_pack = publish.write_pack
    copy_file = publish.copy_file

    def pack_and_signal(*args: object, **kwargs: object) -> str:
        packing_started.set()
        return write_pack(*args, **kwargs)  # type: ignore[arg-type]

    def copy_after_packing_started(*args: object, **kwargs: object) -> None:
        assert packing_started.wait(timeout=10), "no pack was started while the files were copied"
        copy_file(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(publish, "write_pack", pack_and_signal)
    monkeypatch.setattr(publish, "copy_file", copy_after_packing_started)
    (tmp_path / "dest").mkdir()
    copied = publish.copy_trees(sources, tmp_path / "dest", packs=tmp_path / "packs", threads=2)
    assert copied.files == 6
    assert sorted((tmp_path / "dest" / "a-1" / "pkg").iterdir())[0].read_text() == "VALUE = 0\n"
    packed = sorted(parsed[0] for parsed in map(parse_pack_name, _names(tmp_path / "packs")) if parsed)
    assert packed == ["a-1", "b-1"]


def test_a_failed_pack_fails_the_copy_once_the_files_are_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's cleanup never races a pack still being written, and never misses its failure."""
    sources = {"a-1": _entry(tmp_path / "src" / "a", 20)}
    files_done = threading.Event()
    copy_file = publish.copy_file
    copied: list[object] = []

    def copy_and_count(*args: object, **kwargs: object) -> None:
        copy_file(*args, **kwargs)  # type: ignore[arg-type]
        copied.append(args[1])
        if len(copied) == 20:
            files_done.set()

    def failing_pack(*args: object, **kwargs: object) -> str:
        raise OSError("no space left for the pack")

    monkeypatch.setattr(publish, "copy_file", copy_and_count)
    monkeypatch.setattr(publish, "write_pack", failing_pack)
    (tmp_path / "dest").mkdir()
    with pytest.raises(OSError, match="no space left for the pack"):
        publish.copy_trees(sources, tmp_path / "dest", packs=tmp_path / "packs", threads=2)
    assert files_done.is_set()
    assert not [thread for thread in threading.enumerate() if thread.name == "volume-cli-packs"]


def _names(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir()]
