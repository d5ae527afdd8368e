"""One file-operations module for both engines and the metadata store (issue 11): volume_cli/fileops.py."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

import volume_cli
from volume_cli import fileops
from volume_cli.errors import UnsafePathError
from volume_cli.fileops import TRASH_PREFIX, read_regular_file, relative_symlink, remove_tree

PACKAGE = Path(volume_cli.__file__).parent


def test_a_file_is_unlinked_not_left_as_trash(tmp_path: Path) -> None:
    # The deps flavour used to rename a file aside and then fail to rmtree it: a .trash- file stayed.
    store = tmp_path / "volume" / "python-deps" / ".store"
    store.mkdir(parents=True)
    (store / "stray").write_bytes(b"x")
    remove_tree(store / "stray")
    assert os.listdir(store) == []


@pytest.mark.parametrize("engine", ["deps", "models"])
def test_both_engines_set_a_folder_aside_under_the_one_trash_prefix(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "volume"
    parent = root / ("python-deps/.store" if engine == "deps" else "models/loras")
    (parent / "victim" / "sub").mkdir(parents=True)
    monkeypatch.setattr(shutil, "rmtree", lambda *args, **kwargs: None)  # stop after the rename
    if engine == "deps":
        remove_tree(parent / "victim")
    else:
        remove_tree(parent / "victim", within=root / "models")
    [left] = os.listdir(parent)
    assert left.startswith(TRASH_PREFIX + "victim-")


def test_a_link_is_removed_as_a_link_and_a_planted_one_above_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    models = tmp_path / "volume" / "models"
    models.mkdir(parents=True)
    os.symlink(outside, models / "planted")
    with pytest.raises(UnsafePathError):
        remove_tree(models / "planted" / "keep", within=models)
    remove_tree(models / "planted", within=models)
    assert not (models / "planted").exists() and (outside / "keep").is_dir()


def test_a_path_outside_a_volume_is_refused_without_a_guard(tmp_path: Path) -> None:
    (tmp_path / "somewhere").mkdir()
    with pytest.raises(UnsafePathError):
        remove_tree(tmp_path / "somewhere")
    assert (tmp_path / "somewhere").is_dir()


def test_one_relative_symlink_helper_creates_or_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "target"
    target.mkdir(parents=True)
    link = tmp_path / "b" / "link"
    link.parent.mkdir()
    relative_symlink(link, target, replace=False)
    assert os.readlink(link) == os.path.join("..", "a", "target")
    with pytest.raises(FileExistsError):
        relative_symlink(link, target, replace=False)
    other = tmp_path / "a" / "other"
    other.mkdir()
    relative_symlink(link, other)
    assert os.readlink(link) == os.path.join("..", "a", "other")


def test_the_temp_names_are_the_ones_the_cleanup_sweeps(tmp_path: Path) -> None:
    temp = fileops.temp_path_for(tmp_path / "state.json")
    temp.write_text("{}")
    os.utime(temp, (0, 0))
    assert fileops.cleanup_stale_temp_files(tmp_path) == 1


def test_no_other_module_defines_a_removal_or_a_trash_name() -> None:
    defined = re.compile(r"^def (remove_tree|remove_path|set_aside|_set_aside|unique_sibling|relative_symlink)\b", re.M)
    found = [
        f"{path.relative_to(PACKAGE)}: {match.group(1)}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "fileops.py"
        for match in defined.finditer(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_a_folder_removed_by_another_run_meanwhile_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rmtree's unguarded fstat answers ESTALE on a network file system when another run removes the folder."""
    folder = tmp_path / "python-deps" / ".staging" / f"{TRASH_PREFIX}x"
    (folder / "pkg").mkdir(parents=True)
    real_fstat = os.fstat

    def stale(fd: int) -> os.stat_result:
        if os.readlink(f"/proc/self/fd/{fd}") == str(folder):
            raise OSError(116, "Stale file handle")
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", stale)
    fileops.discard_tree(folder)  # raised OSError(ESTALE) through shutil.rmtree(ignore_errors=True) before
    fileops.discard_tree(tmp_path / "never-there")


def test_reading_a_regular_file_never_follows_a_link_nor_waits_on_a_fifo(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"version = 1\n")
    secret = tmp_path / "secret"
    secret.write_bytes(b"SECRET")
    link = tmp_path / "link"
    link.symlink_to(secret)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert read_regular_file(plain) == b"version = 1\n"
    assert read_regular_file(link) is None
    assert read_regular_file(fifo) is None  # no writer: a blocking open would wait forever
    assert read_regular_file(tmp_path) is None
    assert read_regular_file(tmp_path / "missing") is None
