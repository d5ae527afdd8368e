"""``models gc``: which models are protected is decided here, not by the command that asks."""

from __future__ import annotations

from collections.abc import Mapping

from volume_cli.layout import VolumeLayout
from volume_cli.models.gc import keys_recorded_on_volume
from volume_cli.models.results import GcResult
from volume_cli.project.definition import ProjectDefinition


def declared_model_keys(projects: Mapping[str, ProjectDefinition]) -> dict[str, list[str]]:
    """Per project found here, the model keys its definition declares."""
    return {name: [spec.key for spec in definition.models] for name, definition in projects.items()}


def protected_model_keys(layout: VolumeLayout, projects: Mapping[str, ProjectDefinition]) -> set[str]:
    """What the projects found here declare, plus what the volume records for projects not found here.

    Projects set up from another pod (whose folders are not found here) keep their models: the
    volume's own records say what they use. ``models rm`` removes those explicitly.
    """
    declared = {key for keys in declared_model_keys(projects).values() for key in keys}
    return declared | keys_recorded_on_volume(layout, exclude=set(projects))


def collect_models(*, layout: VolumeLayout, projects: Mapping[str, ProjectDefinition], dry_run: bool) -> GcResult:
    """Remove (or, dry run, list) the models no project references; a shared model counts once."""
    from volume_cli.models import gc

    return gc(layout=layout, referenced_keys=protected_model_keys(layout, projects), dry_run=dry_run)
