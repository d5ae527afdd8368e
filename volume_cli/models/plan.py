"""Offline planning: what a model needs, decided from its manifest and a ``stat`` per file.

This is the whole of the start-up no-op path, so it must never touch the
network, import a hub client or hash a byte.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from volume_cli.config.model_sources import HuggingFaceModel, LocalModel, ModelScopeModel, ModelSpec, UrlModel
from volume_cli.errors import ModelError
from volume_cli.models.fsops import MANAGED_TOP_LEVEL
from volume_cli.models.localsource import fingerprint, scan_source, source_path
from volume_cli.models.manifest import ModelManifest, QuickCheck, quick_check, read_model_manifest, spec_hash
from volume_cli.models.sources import SourceContext, is_pinned

PlanState = Literal["present", "missing", "outdated", "incomplete", "relayout", "refresh"]


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


def _local_source_changed(spec: LocalModel, manifest: ModelManifest, project_folder: Path) -> bool:
    files = scan_source(source_path(spec, project_folder))
    if files is None:
        return False  # a worker without the source keeps the imported copy
    return fingerprint(files) != manifest.source_fingerprint


def plan_model(
    context: SourceContext,
    spec: ModelSpec,
    project_folder: Path,
    *,
    refresh: bool,
    is_current: Callable[[ModelManifest], bool],
) -> ModelPlan:
    """``is_current``: the source's on-volume arrangement (ModelScope layout and links) is what we would write."""
    manifest = read_model_manifest(context.layout, spec.key)
    if manifest is None:
        return ModelPlan(spec, None, "missing", None)
    if manifest.spec_hash != spec_hash(spec):
        return ModelPlan(spec, manifest, "outdated", None)
    check = quick_check(context.layout, manifest)
    if isinstance(spec, LocalModel) and _local_source_changed(spec, manifest, project_folder):
        return ModelPlan(spec, manifest, "outdated", check)
    movable = isinstance(spec, HuggingFaceModel | ModelScopeModel) and not is_pinned(spec.revision)
    if not check.ok:
        # A run killed after switching to a newer commit leaves the manifest naming the old one:
        # repairing from it would bring the old commit back, asking the hub goes forward.
        return ModelPlan(spec, manifest, "refresh" if refresh and movable else "incomplete", check)
    if not is_current(manifest):
        return ModelPlan(spec, manifest, "refresh" if refresh and movable else "relayout", check)
    if refresh and movable:
        return ModelPlan(spec, manifest, "refresh", check)
    return ModelPlan(spec, manifest, "present", check)
