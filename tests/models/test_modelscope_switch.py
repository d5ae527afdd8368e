"""ModelScope updates switch whole revisions; a complete shared model is never moved.

A reader polls the folder a ModelScope release reads while the engine
updates the model: every observation must be one whole revision (config and
weights of the same commit), and no file may ever be missing. Two projects
whose workers import different modelscope releases share one model: running
their start-up checks in turn must neither move the files nor claim to
fetch anything.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker
from volume_cli import models
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest, write_manifest

MODEL = "owner/switch.model"
KEY = f"modelscope/{MODEL}"
WEIGHT_SIZE = 200_000


def _revision(number: int) -> dict[str, bytes]:
    tag = str(number).encode()
    return {
        "configuration.json": b'{"rev": ' + tag + b"}",
        "pytorch_model.bin": tag * WEIGHT_SIZE,
        "tokenizer/vocab.txt": b"vocab " + tag,
    }


@dataclass
class Observations:
    seen: dict[tuple[bytes, ...], int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def mixed(self) -> int:
        return sum(count for key, count in self.seen.items() if len(set(key)) > 1)

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def _observe(folder: Path) -> tuple[bytes, ...]:
    """Read the model the way a loader does: resolve the folder once, then open its files."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        config = _read(fd, "configuration.json")
        weights = _read(fd, "pytorch_model.bin")
        vocab = _read(fd, "tokenizer/vocab.txt")
    finally:
        os.close(fd)
    if len(set(weights)) != 1 or len(weights) != WEIGHT_SIZE:
        return (b"torn-weights",)
    return (config.split(b" ")[1].rstrip(b"}"), weights[:1], vocab.split(b" ")[1])


def _read(dir_fd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "rb", closefd=False) as stream:
            return stream.read()
    finally:
        os.close(fd)


@contextmanager
def _polling(folders: list[Path]) -> Iterator[Observations]:
    found = Observations()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            for folder in folders:
                try:
                    key = _observe(folder)
                except OSError as exc:
                    found.errors.append(f"{folder}: {type(exc).__name__}: {exc}")
                    continue
                found.seen[key] = found.seen.get(key, 0) + 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join(timeout=10)


def _reader_folders(layout: VolumeLayout) -> list[Path]:
    cache = layout.modelscope_cache
    return [
        cache / "models" / "owner" / "switch___model",  # 1.23 and later
        cache / "hub" / "owner" / "switch___model",  # 1.15 - 1.22
        cache / "owner" / "switch.model",  # 1.11 and earlier
    ]


def _download(layout: VolumeLayout, project: Any, hub: FakeHub, **kwargs: Any) -> models.DownloadResult:
    return models.download(layout=layout, project=project, modelscope_endpoints=[hub.url], **{**FAST, **kwargs})


def test_refresh_switches_the_whole_revision_at_once(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo(MODEL, files=_revision(1))
    project = make_project([{"source": "modelscope", "model_id": MODEL}])
    _download(layout, project, hub)
    second = hub.move_ms_revision(MODEL, "master", files=_revision(2))
    hub.throttle(WEIGHT_SIZE * 2.5)  # the weights take ~0.4 s: the small files land long before

    with _polling(_reader_folders(layout)) as seen:
        [outcome] = _download(layout, project, hub, refresh=True).models
        hub.throttle(None)
        after = _observe(_reader_folders(layout)[0])

    assert outcome.action == "updated" and outcome.resolved_commit == second
    assert after == (b"2", b"2", b"2")
    assert seen.total > 20, seen
    assert seen.mixed == 0, f"{seen.mixed} of {seen.total} observations mixed two revisions: {seen.seen}"
    assert seen.errors == [], seen.errors[:5]
    assert set(seen.seen) <= {(b"1", b"1", b"1"), (b"2", b"2", b"2")}


def test_two_projects_with_different_modelscope_releases_do_not_move_a_shared_model(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo(MODEL, files=_revision(1))
    spec = [{"source": "modelscope", "model_id": MODEL}]
    old_workers = make_project(spec, name="old-workers")
    new_workers = make_project(spec, name="new-workers")
    first = models.ensure(
        layout=layout,
        project=old_workers,
        modelscope_endpoints=[hub.url],
        consumer_modelscope_version="1.10.0",
        timeout=3.0,
        retries=1,
    )
    assert first.complete
    hub.stop()  # from now on nothing may be fetched
    weights = _reader_folders(layout)[0] / "pytorch_model.bin"
    real_before = (os.path.realpath(weights), os.stat(weights).st_ino)

    runs: list[tuple[str, str, bool]] = []
    with _polling(_reader_folders(layout)) as seen:
        for _round in range(4):
            for project, version in ((new_workers, None), (old_workers, "1.10.0"), (new_workers, "1.30.0")):
                result = models.ensure(
                    layout=layout,
                    project=project,
                    modelscope_endpoints=[hub.url],
                    consumer_modelscope_version=version,
                    timeout=1.0,
                    retries=0,
                )
                assert result.download is not None
                runs.append((project.name, result.reason, result.download.network_used))

    assert all(reason == "all models present" and not network for _name, reason, network in runs), runs
    assert (os.path.realpath(weights), os.stat(weights).st_ino) == real_before
    assert seen.errors == [], f"{len(seen.errors)} failed reads, first: {seen.errors[:3]}"
    assert seen.total > 0 and seen.mixed == 0


def test_every_release_folder_leads_to_the_same_revision(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo(MODEL, files=_revision(1))
    project = make_project([{"source": "modelscope", "model_id": MODEL}])
    for version in ("1.10.0", "1.13.0", "1.20.0", None):
        _download(layout, project, hub, consumer_modelscope_version=version)
        manifest = read_model_manifest(layout, KEY)
        assert manifest is not None
        real = {os.path.realpath(folder) for folder in _reader_folders(layout)}
        assert real == {str(layout.absolute(manifest.files_root).resolve())}
        for folder in _reader_folders(layout):
            assert folder.is_symlink() and not os.path.isabs(os.readlink(folder))
            assert _observe(folder) == (b"1", b"1", b"1")


def test_a_changed_local_folder_is_swapped_in_without_a_gap(layout: VolumeLayout, make_project: ProjectMaker) -> None:
    def write_source(number: int) -> None:
        tag = str(number % 10).encode()
        for name, data in (("configuration.json", b'{"rev": ' + tag + b"}"), ("pytorch_model.bin", tag * WEIGHT_SIZE)):
            path = project.folder / "assets" / "lora" / name
            path.write_bytes(data)
            os.utime(path, ns=(number, number))
        vocab = project.folder / "assets" / "lora" / "tokenizer" / "vocab.txt"
        vocab.write_bytes(b"vocab " + tag)
        os.utime(vocab, ns=(number, number))

    project = make_project(
        [{"source": "local", "path": "assets/lora", "dest": "loras/mine"}],
        files={"assets/lora/tokenizer/vocab.txt": b""},
    )
    write_source(1)
    models.download(layout=layout, project=project)
    imports = 0
    with _polling([layout.models_dir / "loras" / "mine"]) as seen:
        for number in range(2, 27):
            write_source(number)
            [outcome] = models.download(layout=layout, project=project).models
            imports += outcome.action == "imported"

    assert imports == 25
    assert seen.errors == [], f"{len(seen.errors)} of {seen.total + len(seen.errors)} reads failed: {seen.errors[:3]}"
    assert seen.total > 0 and seen.mixed == 0


def _make_legacy(layout: VolumeLayout) -> Path:
    """Rearrange a download into what earlier volume-cli releases wrote: a real folder, links to it."""
    manifest = read_model_manifest(layout, KEY)
    assert manifest is not None
    revision = layout.absolute(manifest.files_root)
    folders = _reader_folders(layout)
    physical = folders[0]
    physical.unlink()
    os.rename(revision, physical)
    store = revision.parent
    (store / "current").unlink()
    links = [link for link in (layout.absolute(item) for item in manifest.links) if link.is_symlink()]
    for link in links:
        link.unlink()
        link.symlink_to(os.path.relpath(physical, link.parent))
    relative = layout.relative(physical)
    legacy = manifest.model_copy(
        update={"target": relative, "files_root": relative, "layout_variant": "models", "links": manifest.links[2:]}
    )
    write_manifest(layout, legacy)
    return physical


def test_a_legacy_real_folder_is_taken_over_offline_without_readers_missing_it(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo(MODEL, files=_revision(1))
    project = make_project([{"source": "modelscope", "model_id": MODEL}])
    _download(layout, project, hub)
    physical = _make_legacy(layout)
    assert physical.is_dir() and not physical.is_symlink()
    hub.stop()

    with _polling(_reader_folders(layout)) as seen:
        result = models.ensure(layout=layout, project=project, modelscope_endpoints=[hub.url], retries=0)

    assert result.reason == "1 model(s) relinked"  # not "fetched": no byte came from the network
    assert result.download is not None and not result.download.network_used
    [outcome] = result.download.models
    assert outcome.action == "relinked" and outcome.bytes_downloaded == 0
    assert physical.is_symlink() and _observe(physical) == (b"1", b"1", b"1")
    assert seen.errors == [] and seen.mixed == 0 and seen.total > 0
    again = _download(layout, project, hub, retries=0)
    assert again.models[0].action == "present" and not again.network_used


def test_remove_takes_every_revision_and_link_and_nothing_else(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo(MODEL, files=_revision(1))
    hub.add_ms_repo("owner/other", files=_revision(1))
    project = make_project(
        [{"source": "modelscope", "model_id": MODEL}, {"source": "modelscope", "model_id": "owner/other"}]
    )
    _download(layout, project, hub)
    hub.move_ms_revision(MODEL, "master", files=_revision(2))
    _download(layout, project, hub, refresh=True)
    store = layout.modelscope_cache / ".volume-cli" / "owner" / "switch.model"
    assert len(list(store.glob("rev-*"))) == 2  # the replaced revision waits for its readers
    hub.move_ms_revision(MODEL, "master", files=_revision(3))
    _download(layout, project, hub, refresh=True)
    assert len(list(store.glob("rev-*"))) == 2  # ... until the next update
    assert _observe(_reader_folders(layout)[2]) == (b"3", b"3", b"3")

    models.remove(layout=layout, keys=[KEY])

    assert not store.exists() and read_model_manifest(layout, KEY) is None
    assert not any(os.path.lexists(folder) for folder in _reader_folders(layout))
    other = layout.modelscope_cache / "models" / "owner" / "other"
    assert (other / "configuration.json").read_bytes() == b'{"rev": 1}'
    assert models.download(layout=layout, project=project, modelscope_endpoints=[hub.url]).models[1].action == "present"


def test_removing_a_model_counts_files_shared_by_its_revisions_once(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo(MODEL, files=_revision(1))
    project = make_project([{"source": "modelscope", "model_id": MODEL}])
    _download(layout, project, hub)
    files = {**_revision(1), "configuration.json": b'{"rev": 9}'}  # the weights stay: a hard link, no bytes
    hub.move_ms_revision(MODEL, "master", files=files)
    _download(layout, project, hub, refresh=True)

    [removed] = models.remove(layout=layout, keys=[KEY]).removed

    index_bytes = 2000  # .msc .mdl .mv of two revisions
    expected = sum(len(data) for data in _revision(1).values()) + len(b'{"rev": 9}')
    assert expected <= removed.bytes_freed <= expected + index_bytes


def test_status_tells_when_the_switch_is_still_pending_and_download_finishes_it_offline(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo(MODEL, files=_revision(1))
    project = make_project([{"source": "modelscope", "model_id": MODEL}])
    _download(layout, project, hub)
    old = read_model_manifest(layout, KEY)
    hub.move_ms_revision(MODEL, "master", files=_revision(2))
    _download(layout, project, hub, refresh=True)
    assert old is not None
    current = layout.modelscope_cache / ".volume-cli" / "owner" / "switch.model" / "current"
    current.unlink()  # as a kill between the manifest and the switch leaves it
    current.symlink_to(Path(old.files_root).name)
    hub.stop()

    [before] = models.models_status(layout=layout, project=project).models
    [outcome] = _download(layout, project, hub, retries=0).models
    [after] = models.models_status(layout=layout, project=project).models

    assert before.state == "incomplete" and before.problems and "previous revision" in before.problems[0]
    assert outcome.action == "relinked" and _observe(_reader_folders(layout)[1]) == (b"2", b"2", b"2")
    assert after.state == "present"


def test_a_damaged_file_is_repaired_inside_the_live_revision(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo(MODEL, files=_revision(1))
    project = make_project([{"source": "modelscope", "model_id": MODEL}])
    _download(layout, project, hub)
    manifest = read_model_manifest(layout, KEY)
    assert manifest is not None
    live = layout.absolute(manifest.files_root)
    weights = live / "pytorch_model.bin"
    weights.write_bytes(b"x" * WEIGHT_SIZE)  # same size: only a deep verify sees it
    models.verify(layout=layout, project=project, deep=True)

    [outcome] = _download(layout, project, hub).models

    assert outcome.action == "repaired" and outcome.files_fetched == ("pytorch_model.bin",)
    assert read_model_manifest(layout, KEY) is not None
    assert [path.name for path in live.parent.glob("rev-*")] == [live.name]  # no second revision folder
    assert _observe(_reader_folders(layout)[0]) == (b"1", b"1", b"1")
