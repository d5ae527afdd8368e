"""``env``: a worker's variables for one project, models judged against its declared list."""

from __future__ import annotations

from pathlib import Path

from volume_cli.consumer_env import ConsumerEnv, consumer_env, declared_models_hash
from volume_cli.layout import VolumeLayout
from volume_cli.project.definition import ProjectDefinition


def worker_env(
    *, layout: VolumeLayout, project: ProjectDefinition, mount: Path | None, local_cache: Path | None
) -> ConsumerEnv:
    """Models downloaded for an older list of the project do not count as complete."""
    return consumer_env(
        layout=layout,
        project=project.name,
        python_version=project.python_version,
        mount=mount,
        local_cache=local_cache,
        models_hash=declared_models_hash(project),
    )
