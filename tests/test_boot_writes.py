"""The workers' boot folder and runtime copy: written when they differ, read at once when they do not.

Every install and every no-op checks them; on a network volume each read is a round trip, so
the reads overlap (one round trip, not one per file). Files that differ are written in order.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from volume_cli import consumer_env, worker_boot
from volume_cli.consumer_env import BOOT_BYTECODE_BLOCKER, write_boot, write_runtime_copy
from volume_cli.layout import VolumeLayout
from volume_cli.runtime import boot_path

BOOT_FILES = (worker_boot.LOCAL_COPY_FILE, worker_boot.PUSHED_APPLY_FILE, "sitecustomize.py")


def _record_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    written: list[str] = []
    real = consumer_env.atomic_write_bytes

    def recording(target: Path, data: bytes, **kwargs: object) -> None:
        written.append(target.name)
        real(target, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(consumer_env, "atomic_write_bytes", recording)
    return written


def test_the_boot_is_written_in_order_once_and_then_only_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = VolumeLayout(tmp_path / "volume")
    written = _record_writes(monkeypatch)
    folder = write_boot(layout, "demo", "3.11")
    assert folder == boot_path(layout.root, "demo", "3.11")
    assert written == [*BOOT_FILES, BOOT_BYTECODE_BLOCKER]  # the boot after the files it names
    assert (folder / "sitecustomize.py").read_bytes() == Path(worker_boot.__file__).read_bytes()

    written.clear()
    write_boot(layout, "demo", "3.11")
    assert written == []

    (folder / worker_boot.PUSHED_APPLY_FILE).write_text("# an older tool's copy\n")
    write_boot(layout, "demo", "3.11")
    assert written == [worker_boot.PUSHED_APPLY_FILE]


def test_the_runtime_copy_is_written_once_and_then_only_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = VolumeLayout(tmp_path / "volume")
    layout.root.mkdir()
    written = _record_writes(monkeypatch)
    target = write_runtime_copy(layout)
    assert target.is_file() and (target.parent / BOOT_BYTECODE_BLOCKER).is_file()
    assert (layout.hf_hub_cache / "version.txt").is_file()
    assert len(written) == 5
    written.clear()
    write_runtime_copy(layout)
    assert written == []


@pytest.mark.parametrize("write", [write_boot, write_runtime_copy], ids=["boot", "runtime-copy"])
def test_current_files_are_read_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: object) -> None:
    """Three reads meet at a barrier: read one after another, the first would wait for the others in vain."""
    layout = VolumeLayout(tmp_path / "volume")
    layout.root.mkdir()

    def call() -> None:
        if write is write_boot:
            write_boot(layout, "demo", "3.11")
        else:
            write_runtime_copy(layout)

    call()
    barrier = threading.Barrier(3, timeout=10)
    real = Path.read_bytes
    volume = str(layout.root)

    def meeting(path: Path) -> bytes:
        if str(path).startswith(volume):
            barrier.wait()  # BrokenBarrierError (not an OSError) if the reads do not overlap
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", meeting)
    written = _record_writes(monkeypatch)
    call()
    assert written == []
