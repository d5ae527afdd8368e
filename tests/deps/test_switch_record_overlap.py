"""After the switch, state.json is written and the intent cleared at once (each is a few round trips).

Safe in either order: gc protects every linked generation whatever state.json says, and the next
run repairs a state.json left one switch behind. These tests hold both halves.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Projects
from tests.wheelfactory import IndexServer
from volume_cli.deps import gc, install
from volume_cli.deps.documents import install_intent_path, read_generation_record
from volume_cli.deps.forest import current_generation
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.store.state import read_project_state

from .helpers import PY, import_values

install_module = importlib.import_module("volume_cli.deps.install")  # deps.install is the function


def test_the_state_and_the_intent_are_written_at_once_after_the_switch(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install(
        layout=layout,
        project=projects.make("demo", {"m": {"packages": ["alpha==1.0"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    switched = threading.Event()
    barrier = threading.Barrier(2, timeout=10)  # one after the other, the first would wait in vain
    real_switch, real_record, real_clear = (
        install_module.switch_current,
        install_module.record_switch,
        install_module.clear_intent,
    )

    def switch(*args: Any, **kwargs: Any) -> Any:
        done = real_switch(*args, **kwargs)
        switched.set()
        return done

    def meeting(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if switched.is_set():
                barrier.wait()
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(install_module, "switch_current", switch)
    monkeypatch.setattr(install_module, "record_switch", meeting(real_record))
    monkeypatch.setattr(install_module, "clear_intent", meeting(real_clear))
    result = install(
        layout=layout,
        project=projects.make("demo", {"m": {"packages": ["delta"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )
    state = read_project_state(layout, "demo")
    assert state is not None and state.deps is not None and state.deps.generation == result.generation
    assert not install_intent_path(layout, "demo").exists()


def test_gc_keeps_the_linked_generation_when_the_intent_went_before_state_json(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run killed after clearing its intent and before writing state.json: gc must not take its entries."""
    first = install(
        layout=layout,
        project=projects.make("demo", {"m": {"packages": ["alpha==1.0"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )

    class Killed(Exception):
        pass

    def killed(*args: Any, **kwargs: Any) -> None:
        raise Killed

    monkeypatch.setattr(install_module, "record_switch", killed)
    with pytest.raises(Killed):
        install(
            layout=layout,
            project=projects.make("demo", {"m": {"packages": ["delta"]}}),
            mirror=index.url,
            cache_dir=isolated_uv,
            progress=progress,
        )
    assert not install_intent_path(layout, "demo").exists()
    state = read_project_state(layout, "demo")
    assert state is not None and state.deps is not None and state.deps.generation == first.generation
    linked = current_generation(layout, "demo", PY)
    assert linked is not None and linked != first.generation

    gc(layout=layout, grace_seconds=0, dry_run=False, progress=progress)
    record = read_generation_record(layout, "demo", linked)
    assert record is not None
    assert all((layout.store_dir / entry.entry).is_dir() for entry in record.entries)
    assert import_values(layout.deps_path("demo", PY), {"v": "delta.VERSION"})["v"]
