"""Offline planning: what a model needs, decided from its manifest and a ``stat`` per file.

This is the whole of the start-up no-op path, so it must never touch the
network, import a hub client or hash a byte. The state itself is ``models/state.py``'s, which
``models status`` shows too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from volume_cli.config.model_sources import HuggingFaceModel, LocalModel, ModelScopeModel, ModelSpec, UrlModel
from volume_cli.errors import ModelError
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import ModelManifest, QuickCheck, read_model_manifest, spec_hash
from volume_cli.models.sources import is_pinned
from volume_cli.models.staging import MANAGED_TOP_LEVEL
from volume_cli.models.state import StoredState, model_state

PlanState = StoredState | Literal["refresh"]  # refresh: ask the hub whether a branch moved


@dataclass(frozen=True)
class ModelPlan:
    spec: ModelSpec
    manifest: ModelManifest | None
    state: PlanState
    check: QuickCheck | None

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def problems(self) -> tuple[str, ...]:
        return self.check.problems if self.check else ()


def unique_specs(specs: Sequence[ModelSpec]) -> list[ModelSpec]:
    """One entry per key (a project listing a model twice gets it once); managed folders refused."""
    seen: dict[str, ModelSpec] = {}
    for spec in specs:
        if isinstance(spec, UrlModel | LocalModel):
            top = PurePosixPath(spec.dest).parts[0]
            if top in MANAGED_TOP_LEVEL:
                raise ModelError(f"{spec.key}: dest may not start with {top}/ (volume-cli manages that folder)")
        existing = seen.get(spec.key)
        if existing is not None and spec_hash(existing) != spec_hash(spec):
            raise ModelError(f"{spec.key} is listed twice with different settings; keep one entry")
        seen.setdefault(spec.key, spec)
    return list(seen.values())


def plan_model(layout: VolumeLayout, spec: ModelSpec, project_folder: Path, *, refresh: bool) -> ModelPlan:
    """The model's stored state (``models/state.py``), turned into what a download does with it."""
    stored = model_state(layout, spec, read_model_manifest(layout, spec.key), project_folder=project_folder)
    movable = isinstance(spec, HuggingFaceModel | ModelScopeModel) and not is_pinned(spec.revision)
    if refresh and movable and stored.state in ("present", "incomplete", "relayout"):
        # A run killed after switching to a newer commit leaves the manifest naming the old one:
        # repairing from it would bring the old commit back, asking the hub goes forward.
        return ModelPlan(spec, stored.manifest, "refresh", stored.check)
    return ModelPlan(spec, stored.manifest, stored.state, stored.check)
