"""One model state function (models/state.py) that plan and status both read (issue 11).

Before it, models/plan.py and models/status.py each had a state machine and they disagreed: a
HuggingFace branch whose ``refs/<branch>`` no longer names the manifest's commit was "present" to
``models status`` while ``models download`` relinked it.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker
from volume_cli import models
from volume_cli.config.model_sources import ModelSpec, UrlModel
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import ManifestFile, ModelManifest, read_model_manifest, spec_hash
from volume_cli.models.plan import plan_model
from volume_cli.models.state import model_state
from volume_cli.models.status import model_status

WEIGHTS = os.urandom(5000)
URL_SPEC = UrlModel(source="url", url="http://127.0.0.1:9/weights.bin", dest="weights/w.bin")


def _url_manifest(
    layout: VolumeLayout, spec: ModelSpec, *, size: int, hash_of: ModelSpec | None = None
) -> ModelManifest:
    return ModelManifest(
        key=spec.key,
        source="url",
        model_id="http://127.0.0.1:9/weights.bin",
        spec_hash=spec_hash(hash_of or spec),
        target="models/weights/w.bin",
        files_root="models/weights",
        files=[ManifestFile(path="w.bin", size=size)],
        total_size=size,
        downloaded_at=datetime.now(timezone.utc),
    )


def _place(layout: VolumeLayout, data: bytes) -> None:
    path = layout.absolute("models/weights/w.bin")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_no_manifest_is_missing(layout: VolumeLayout) -> None:
    found = model_state(layout, URL_SPEC, None)
    assert (found.state, found.manifest, found.check) == ("missing", None, None)


def test_another_entry_is_outdated(layout: VolumeLayout) -> None:
    other = UrlModel(source="url", url="http://127.0.0.1:9/other.bin", dest="weights/w.bin")
    _place(layout, WEIGHTS)
    found = model_state(layout, URL_SPEC, _url_manifest(layout, URL_SPEC, size=len(WEIGHTS), hash_of=other))
    assert found.state == "outdated"


def test_files_in_place_are_present(layout: VolumeLayout) -> None:
    _place(layout, WEIGHTS)
    found = model_state(layout, URL_SPEC, _url_manifest(layout, URL_SPEC, size=len(WEIGHTS)))
    assert found.state == "present" and found.problems == ()


@pytest.mark.parametrize("data", [None, b"short"], ids=["missing-file", "wrong-size"])
def test_a_missing_or_resized_file_is_incomplete(layout: VolumeLayout, data: bytes | None) -> None:
    if data is not None:
        _place(layout, data)
    found = model_state(layout, URL_SPEC, _url_manifest(layout, URL_SPEC, size=len(WEIGHTS)))
    assert found.state == "incomplete" and found.problems != ()


def test_without_a_spec_only_the_files_count(layout: VolumeLayout) -> None:
    # A model no project wants any more (models list): its manifest is judged on its own.
    _place(layout, WEIGHTS)
    assert model_state(layout, None, _url_manifest(layout, URL_SPEC, size=len(WEIGHTS))).state == "present"


def test_plan_and_status_agree_on_a_branch_whose_ref_moved(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    commit = hub.add_hf_repo("org/tiny", files={"model.bin": WEIGHTS})
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST)  # type: ignore[arg-type]
    [spec] = project.models
    ref = layout.hf_hub_cache / "models--org--tiny" / "refs" / "main"
    assert ref.read_text() == commit

    assert plan_model(layout, spec, project.folder, refresh=False).state == "present"
    assert model_status(layout, spec).state == "present"

    ref.write_text("0" * 40)  # a worker's huggingface_hub resolving "main" no longer reaches these files
    assert model_state(layout, spec, read_model_manifest(layout, spec.key)).state == "relayout"
    assert plan_model(layout, spec, project.folder, refresh=False).state == "relayout"
    status = model_status(layout, spec)
    assert status.state == "incomplete" and status.problems != ()

    result = models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST)  # type: ignore[arg-type]
    assert [outcome.action for outcome in result.models] == ["relinked"]
    assert model_status(layout, spec).state == "present"


def test_refresh_turns_a_movable_revision_into_a_refresh(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, tmp_path: Path
) -> None:
    hub.add_hf_repo("org/tiny", files={"model.bin": WEIGHTS})
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST)  # type: ignore[arg-type]
    [spec] = project.models
    assert plan_model(layout, spec, project.folder, refresh=True).state == "refresh"
    assert model_status(layout, spec).state == "present"
