"""HuggingFace models: download into a real HF cache, pinning, patterns, no-op, refresh, repair."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker, api_requests, resolve_requests
from volume_cli import models
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest
from volume_cli.progress import NullProgress
from volume_cli.store.state import read_project_state

WEIGHTS = os.urandom(300_000)
FILES = {
    "config.json": b'{"hidden_size": 8}',
    "model.safetensors": WEIGHTS,
    "tokenizer/vocab.txt": b"a\nb\nc\n",
    "extra.bin": b"\x00" * 1000,
    "pkg/__init__.py": b"",  # empty files exist in real repos
}


def _download(layout: VolumeLayout, project: object, hub: FakeHub, **kwargs: object) -> models.DownloadResult:
    return models.download(layout=layout, project=project, hf_endpoints=[hub.url], **{**FAST, **kwargs})  # type: ignore[arg-type]


def test_first_download_is_a_standard_cache_the_real_client_reads_offline(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    commit = hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    result = _download(layout, project, hub)

    [outcome] = result.models
    assert outcome.action == "downloaded"
    assert outcome.resolved_commit == commit
    assert outcome.endpoint == hub.url
    assert outcome.bytes_downloaded == sum(len(data) for data in FILES.values())
    repo = layout.hf_hub_cache / "models--org--tiny"
    assert (repo / "refs" / "main").read_text() == commit
    link = repo / "snapshots" / commit / "tokenizer" / "vocab.txt"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert not list(repo.rglob("*.incomplete"))

    from huggingface_hub import hf_hub_download, snapshot_download

    hub.stop()
    folder = snapshot_download("org/tiny", cache_dir=layout.hf_hub_cache, local_files_only=True)
    assert Path(folder, "model.safetensors").read_bytes() == WEIGHTS
    config = hf_hub_download("org/tiny", "config.json", cache_dir=layout.hf_hub_cache, local_files_only=True)
    assert Path(config).read_bytes() == FILES["config.json"]

    manifest = read_model_manifest(layout, "huggingface/model/org/tiny")
    assert manifest is not None and manifest.total_size == outcome.size_bytes
    by_path = {entry.path: entry for entry in manifest.files}
    assert by_path["model.safetensors"].sha256 is not None  # LFS: sha256
    assert by_path["config.json"].git_sha1 is not None  # regular file: git blob id
    state = read_project_state(layout, "demo")
    assert state is not None and state.models is not None
    assert state.models.model_keys == ["huggingface/model/org/tiny"]


def test_no_op_makes_zero_requests_with_the_hub_gone(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    hub.add_hf_repo("data/set", files={"train.csv": b"x,y\n1,2\n"}, repo_type="dataset")
    project = make_project(
        [
            {"source": "huggingface", "repo_id": "org/tiny"},
            {"source": "huggingface", "repo_id": "data/set", "repo_type": "dataset"},
        ]
    )
    _download(layout, project, hub)
    seen = len(hub.requests)
    hub.stop()

    result = _download(layout, project, hub)

    assert [model.action for model in result.models] == ["present", "present"]
    assert not result.network_used
    assert len(hub.requests) == seen
    status = models.models_status(layout=layout, project=project)
    assert status.complete and status.size_bytes == sum(model.size_bytes for model in result.models)


def test_pinned_revision_gets_that_commit(hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker) -> None:
    old = hub.add_hf_repo("org/tiny", files={"config.json": b'{"v": 1}'})
    hub.move_branch("org/tiny", "main", files={"config.json": b'{"v": 2}'})
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny", "revision": old}])

    [outcome] = _download(layout, project, hub).models

    assert outcome.resolved_commit == old
    snapshot = layout.hf_hub_cache / "models--org--tiny" / "snapshots" / old
    assert (snapshot / "config.json").read_bytes() == b'{"v": 1}'
    assert not (layout.hf_hub_cache / "models--org--tiny" / "refs").exists()  # a commit needs no ref


def test_allow_and_ignore_patterns(hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project(
        [
            {
                "source": "huggingface",
                "repo_id": "org/tiny",
                "allow_patterns": ["*.json", "tokenizer/", "*.bin"],
                "ignore_patterns": ["extra.*"],
            }
        ]
    )

    [outcome] = _download(layout, project, hub).models

    assert outcome.files_fetched == ("config.json", "tokenizer/vocab.txt")
    assert not resolve_requests(hub, "model.safetensors")


def test_refresh_sees_a_moved_branch(hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker) -> None:
    first = hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    _download(layout, project, hub)
    second = hub.move_branch("org/tiny", "main", files={**FILES, "config.json": b'{"hidden_size": 16}'})
    hub.clear_requests()

    unchanged = _download(layout, project, hub)
    assert unchanged.models[0].action == "present" and not hub.requests  # without refresh: offline

    [outcome] = _download(layout, project, hub, refresh=True).models

    assert outcome.action == "updated" and outcome.resolved_commit == second
    assert outcome.files_fetched == ("config.json",)  # unchanged blobs are shared between commits
    repo = layout.hf_hub_cache / "models--org--tiny"
    assert (repo / "refs" / "main").read_text() == second
    assert (repo / "snapshots" / first).exists()  # kept for readers that resolved it, until the next update
    assert (repo / "snapshots" / second / "config.json").read_bytes() == b'{"hidden_size": 16}'

    hub.clear_requests()
    assert _download(layout, project, hub, refresh=True).models[0].action == "present"
    assert len(api_requests(hub)) == 1 and not resolve_requests(hub)


def test_deep_verify_finds_a_corrupt_file_and_download_refetches_only_it(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    commit = hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    _download(layout, project, hub)
    weights = layout.hf_hub_cache / "models--org--tiny" / "snapshots" / commit / "model.safetensors"
    blob = weights.resolve()
    blob.write_bytes(b"\xff" * len(WEIGHTS))  # same size: only a checksum shows it

    assert models.verify(layout=layout, project=project, deep=False).ok
    deep = models.verify(layout=layout, project=project, deep=True)
    assert not deep.ok
    assert [(damaged.path, damaged.problem) for damaged in deep.models[0].damaged] == [
        ("model.safetensors", "checksum")
    ]
    assert models.models_status(layout=layout, project=project).models[0].state == "incomplete"
    hub.clear_requests()

    [outcome] = _download(layout, project, hub).models

    assert outcome.action == "repaired" and outcome.files_fetched == ("model.safetensors",)
    assert [request[1].rsplit("/", 1)[-1] for request in hub.requests] == ["model.safetensors"]  # no listing either
    assert weights.read_bytes() == WEIGHTS
    assert models.verify(layout=layout, project=project, deep=True).ok


def test_a_missing_file_is_repaired_from_the_manifest(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    commit = hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    _download(layout, project, hub)
    (layout.hf_hub_cache / "models--org--tiny" / "snapshots" / commit / "config.json").resolve().unlink()
    quick = models.verify(layout=layout, project=project)
    assert [(damaged.path, damaged.problem) for damaged in quick.models[0].damaged] == [("config.json", "missing")]
    hub.clear_requests()

    [outcome] = _download(layout, project, hub).models

    assert outcome.files_fetched == ("config.json",) and len(hub.requests) == 1


def test_dry_run_lists_without_writing(hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    result = _download(layout, project, hub, dry_run=True)

    assert result.models[0].action == "planned"
    assert result.bytes_needed == sum(len(data) for data in FILES.values())
    assert not resolve_requests(hub)
    assert not layout.hf_hub_cache.exists()
    assert models.models_status(layout=layout, project=project).models[0].state == "missing"


def test_progress_reports_bytes_per_model_and_overall(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    recorder = RecordingProgress()

    _download(layout, project, hub, progress=recorder)

    total = sum(len(data) for data in FILES.values())
    assert recorder.tasks["models"] == [total, total]
    assert recorder.tasks["huggingface/model/org/tiny"] == [total, total]


class _Task:
    def __init__(self, record: list[float]) -> None:
        self.record = record
        self.done = 0.0

    def advance(self, amount: float = 1) -> None:
        self.done += amount

    def update(
        self, *, completed: float | None = None, total: float | None = None, description: str | None = None
    ) -> None:
        if completed is not None:
            self.done = completed

    def finish(self) -> None:
        self.record.append(self.done)


class RecordingProgress(NullProgress):
    """Records, per task description: [total, completed bytes at finish]."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, list[float]] = {}

    def task(self, description: str, *, total: float | None = None, unit: str = "items") -> _Task:  # type: ignore[override]
        assert unit == "bytes"
        record = self.tasks.setdefault(description, [total or 0.0])
        return _Task(record)
