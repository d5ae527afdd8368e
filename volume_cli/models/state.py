"""The one model state machine: what a model's manifest and files say, offline.

``models/plan.py`` (what a download must do) and ``models/status.py`` (what
``models status`` and ``models list`` show) both read it, so the two never
disagree. One ``stat`` per file and a few ``readlink``: no network, no hashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from volume_cli.config.model_sources import LocalModel, ModelSpec
from volume_cli.layout import VolumeLayout
from volume_cli.models.hf import refs_name_commit
from volume_cli.models.localsource import fingerprint, scan_source, source_path
from volume_cli.models.manifest import ModelManifest, QuickCheck, quick_check, spec_hash
from volume_cli.models.modelscope import revision_is_live

StoredState = Literal["present", "missing", "outdated", "incomplete", "relayout"]


@dataclass(frozen=True)
class StoredModel:
    """``relayout``: every file is whole but the switch readers follow (refs, links) is not this manifest's."""

    state: StoredState
    manifest: ModelManifest | None
    check: QuickCheck | None

    @property
    def problems(self) -> tuple[str, ...]:
        return self.check.problems if self.check else ()


def model_state(
    layout: VolumeLayout, spec: ModelSpec | None, manifest: ModelManifest | None, *, project_folder: Path | None = None
) -> StoredModel:
    """``spec`` None: a model no project wants, judged on its manifest alone; ``project_folder`` also
    compares a local model's source folder with what was imported."""
    if manifest is None:
        return StoredModel("missing", None, None)
    if spec is not None and manifest.spec_hash != spec_hash(spec):
        return StoredModel("outdated", manifest, None)
    check = quick_check(layout, manifest)
    if (
        isinstance(spec, LocalModel)
        and project_folder is not None
        and _local_source_changed(spec, manifest, project_folder)
    ):
        return StoredModel("outdated", manifest, check)
    if not check.ok:
        return StoredModel("incomplete", manifest, check)
    if not arrangement_is_current(layout, manifest):
        return StoredModel("relayout", manifest, check)
    return StoredModel("present", manifest, check)


def arrangement_is_current(layout: VolumeLayout, manifest: ModelManifest) -> bool:
    """The switch a reader follows (an HF ref, ModelScope's links) leads to this manifest's files."""
    if manifest.source == "huggingface":
        return refs_name_commit(layout, manifest)
    if manifest.source == "modelscope":
        return revision_is_live(layout, manifest)
    return True  # URL and local models are placed with one rename: nothing to switch


def _local_source_changed(spec: LocalModel, manifest: ModelManifest, project_folder: Path) -> bool:
    files = scan_source(source_path(spec, project_folder))
    if files is None:
        return False  # a worker without the source keeps the imported copy
    return fingerprint(files) != manifest.source_fingerprint
