"""Status and listings from manifests alone: no network, no hashing, one ``stat`` per file."""

from __future__ import annotations

from collections.abc import Sequence

from volume_cli.config.model_sources import ModelSpec
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import ModelManifest, all_manifests, read_model_manifest
from volume_cli.models.plan import unique_specs
from volume_cli.models.results import ModelListing, ModelsStatus, ModelState, ModelStatus
from volume_cli.models.state import model_state
from volume_cli.project.definition import ProjectDefinition

NOT_SWITCHED = "(workers' folders still lead to the previous revision)"


def _state(
    layout: VolumeLayout, spec: ModelSpec | None, manifest: ModelManifest | None
) -> tuple[ModelState, tuple[str, ...]]:
    stored = model_state(layout, spec, manifest)
    if stored.state == "relayout":
        # A run stopped between the manifest and the switch: workers still read the previous revision.
        return "incomplete", (NOT_SWITCHED,)
    return stored.state, stored.problems


def model_status(layout: VolumeLayout, spec: ModelSpec) -> ModelStatus:
    manifest = read_model_manifest(layout, spec.key)
    state, problems = _state(layout, spec, manifest)
    return ModelStatus(
        key=spec.key,
        source=spec.source,
        state=state,
        requested_revision=getattr(spec, "revision", None),
        resolved_commit=manifest.resolved_commit if manifest else None,
        size_bytes=manifest.total_size if manifest else 0,
        file_count=len(manifest.files) if manifest else 0,
        path=manifest.files_root if manifest else None,
        endpoint=manifest.endpoint if manifest else None,
        downloaded_at=manifest.downloaded_at if manifest else None,
        problems=problems,
    )


def models_status(*, layout: VolumeLayout, project: ProjectDefinition) -> ModelsStatus:
    """Per model: present / missing / incomplete / outdated, with size and revision from its manifest."""
    return ModelsStatus(
        project=project.name, models=tuple(model_status(layout, spec) for spec in unique_specs(project.models))
    )


def list_models(*, layout: VolumeLayout, projects: Sequence[ProjectDefinition]) -> tuple[ModelListing, ...]:
    """Desired (by any of ``projects``) versus present on the volume, one row per model key."""
    desired: dict[str, tuple[ModelSpec | None, list[str]]] = {}
    for project in projects:
        for spec in unique_specs(project.models):
            entry = desired.setdefault(spec.key, (spec, []))
            entry[1].append(project.name)
    manifests = {manifest.key: manifest for manifest in all_manifests(layout)}
    rows = []
    for key in sorted(set(desired) | set(manifests)):
        wanted_spec, wanted_by = desired.get(key, (None, []))
        manifest = manifests.get(key)
        state, _problems = _state(layout, wanted_spec, manifest)
        rows.append(
            ModelListing(
                key=key,
                source=wanted_spec.source if wanted_spec else (manifest.source if manifest else "unknown"),
                desired_by=tuple(sorted(wanted_by)),
                state=state,
                requested_revision=_requested(wanted_spec, manifest),
                resolved_commit=manifest.resolved_commit if manifest else None,
                size_bytes=manifest.total_size if manifest else 0,
                path=manifest.files_root if manifest else None,
            )
        )
    return tuple(rows)


def _requested(spec: ModelSpec | None, manifest: ModelManifest | None) -> str | None:
    if spec is not None:
        return getattr(spec, "revision", None)
    return manifest.requested_revision if manifest else None
