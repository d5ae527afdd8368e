"""The holder a waiting run is told about names a command that exists (issue 11: no `deps gc`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from volume_cli.errors import LockHeldError
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.store.writer_locks import gc_lock


def test_gc_lock_holder_names_the_real_gc_command(tmp_path: Path) -> None:
    layout = VolumeLayout(root=tmp_path)
    layout.locks_dir.mkdir(parents=True, exist_ok=True)
    with gc_lock(layout, wait_seconds=0, progress=NullProgress()), pytest.raises(LockHeldError) as raised:
        gc_lock(layout, wait_seconds=0, progress=NullProgress()).acquire()
    assert "'gc'" in str(raised.value)
    assert "deps gc" not in str(raised.value)
