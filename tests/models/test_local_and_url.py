"""Local imports, URL files, listings and garbage collection."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker
from volume_cli import models
from volume_cli.errors import ConfigError, ModelError
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest


def test_local_folder_is_copied_with_checksums_and_then_a_no_op(
    layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    project = make_project(
        [{"source": "local", "path": "assets/lora", "dest": "loras/mine"}],
        files={"assets/lora/a.safetensors": b"A" * 1000, "assets/lora/sub/b.json": b"{}"},
    )

    [outcome] = models.download(layout=layout, project=project).models

    assert outcome.action == "imported" and outcome.size_bytes == 1002
    dest = layout.models_dir / "loras" / "mine"
    assert (dest / "sub" / "b.json").read_bytes() == b"{}"
    assert (project.folder / "assets" / "lora" / "a.safetensors").exists()  # copied, not moved
    manifest = read_model_manifest(layout, "local/loras/mine")
    assert manifest is not None
    assert {entry.path: entry.sha256 for entry in manifest.files} == {
        "a.safetensors": hashlib.sha256(b"A" * 1000).hexdigest(),
        "sub/b.json": hashlib.sha256(b"{}").hexdigest(),
    }
    assert not [entry for entry in dest.parent.iterdir() if entry.name.startswith(".")]  # no temp sibling left

    assert models.download(layout=layout, project=project).models[0].action == "present"


def test_a_changed_local_source_replaces_the_old_copy(layout: VolumeLayout, make_project: ProjectMaker) -> None:
    project = make_project([{"source": "local", "path": "w.bin", "dest": "checkpoints/w.bin"}], files={"w.bin": b"old"})
    models.download(layout=layout, project=project)
    source = project.folder / "w.bin"
    source.write_bytes(b"newer")
    os.utime(source, ns=(1, 1))

    [outcome] = models.download(layout=layout, project=project).models

    assert outcome.action == "imported"
    assert (layout.models_dir / "checkpoints" / "w.bin").read_bytes() == b"newer"


def test_a_worker_without_the_local_source_keeps_the_imported_copy(
    layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    project = make_project([{"source": "local", "path": "w.bin", "dest": "checkpoints/w.bin"}], files={"w.bin": b"x"})
    models.download(layout=layout, project=project)
    (project.folder / "w.bin").unlink()

    assert models.download(layout=layout, project=project).models[0].action == "present"


def test_a_missing_local_source_is_a_clear_error(layout: VolumeLayout, make_project: ProjectMaker) -> None:
    project = make_project([{"source": "local", "path": "nope", "dest": "x"}])

    with pytest.raises(models.ModelDownloadError, match="does not exist"):
        models.download(layout=layout, project=project)


def test_dest_inside_a_managed_folder_is_refused(layout: VolumeLayout, make_project: ProjectMaker) -> None:
    # The config refuses it now (projects check and download agree); the engine keeps its own check.
    with pytest.raises((ModelError, ConfigError), match="manages"):
        project = make_project(
            [{"source": "local", "path": "w.bin", "dest": "huggingface/w.bin"}], files={"w.bin": b"x"}
        )
        models.download(layout=layout, project=project)


def test_url_without_sha256_records_the_computed_one(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    data = os.urandom(10_000)
    hub.add_hf_repo("org/files", files={"vae.safetensors": data})
    url = f"{hub.url}/org/files/resolve/main/vae.safetensors"
    project = make_project([{"source": "url", "url": url, "dest": "vae/vae.safetensors"}])

    [outcome] = models.download(layout=layout, project=project, **FAST).models

    assert outcome.endpoint == hub.url
    manifest = read_model_manifest(layout, "url/vae/vae.safetensors")
    assert manifest is not None and manifest.files[0].sha256 == hashlib.sha256(data).hexdigest()
    hub.stop()
    assert models.download(layout=layout, project=project, **FAST).models[0].action == "present"
    assert models.verify(layout=layout, project=project, deep=True).ok


def test_list_models_and_gc_count_a_shared_model_once(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/shared", files={"w.safetensors": b"S" * 4000})
    hub.add_hf_repo("org/only-b", files={"w.safetensors": b"B" * 3000})
    shared = {"source": "huggingface", "repo_id": "org/shared"}
    first = make_project([shared], name="first")
    second = make_project([shared, {"source": "huggingface", "repo_id": "org/only-b"}], name="second")
    for project in (first, second):
        models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST)

    rows = {row.key: row for row in models.list_models(layout=layout, projects=[first, second])}
    assert rows["huggingface/model/org/shared"].desired_by == ("first", "second")
    assert rows["huggingface/model/org/shared"].state == "present"

    referenced = {spec.key for spec in first.models}
    planned = models.gc(layout=layout, referenced_keys=referenced, dry_run=True)
    assert [model.key for model in planned.removed] == ["huggingface/model/org/only-b"]
    assert (layout.hf_hub_cache / "models--org--only-b").exists()

    done = models.gc(layout=layout, referenced_keys=referenced)

    assert 3000 <= done.bytes_freed < 3100  # the blob plus its ref file
    assert done.kept == ("huggingface/model/org/shared",)
    assert not (layout.hf_hub_cache / "models--org--only-b").exists()
    rows = {row.key: row for row in models.list_models(layout=layout, projects=[first])}
    assert set(rows) == {"huggingface/model/org/shared"}


def test_remove_a_modelscope_model_takes_its_links_too(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo("owner/m.x", files={"configuration.json": b"{}"})
    project = make_project([{"source": "modelscope", "model_id": "owner/m.x"}])
    models.download(layout=layout, project=project, modelscope_endpoints=[hub.url], **FAST)

    result = models.remove(layout=layout, keys=["modelscope/owner/m.x"])

    assert result.removed[0].bytes_freed > 0
    leftovers = [path for path in Path(layout.modelscope_cache).rglob("*")]
    assert leftovers == []


def test_a_damaged_url_file_is_fetched_again(hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker) -> None:
    hub.add_hf_repo("org/files", files={"vae.safetensors": b"v" * 5000})
    url = f"{hub.url}/org/files/resolve/main/vae.safetensors"
    project = make_project([{"source": "url", "url": url, "dest": "vae/vae.safetensors"}])
    models.download(layout=layout, project=project, **FAST)
    target = layout.models_dir / "vae" / "vae.safetensors"
    target.write_bytes(b"x" * 5000)
    assert not models.verify(layout=layout, project=project, deep=True).ok

    [outcome] = models.download(layout=layout, project=project, **FAST).models

    assert outcome.action == "repaired" and target.read_bytes() == b"v" * 5000


def test_gc_drops_partials_of_models_nobody_wants(layout: VolumeLayout) -> None:
    from volume_cli.models.manifest import safe_key
    from volume_cli.models.staging import staging_dir

    staging = staging_dir(layout)
    staging.mkdir(parents=True)
    (staging / f"{safe_key('url/keep.bin')}.part").write_bytes(b"k")
    (staging / f"{safe_key('url/gone.bin')}.part").write_bytes(b"g")
    (staging / safe_key("modelscope/o/gone")).mkdir()

    models.gc(layout=layout, referenced_keys={"url/keep.bin"})

    assert [entry.name for entry in staging.iterdir()] == [f"{safe_key('url/keep.bin')}.part"]
