"""The public base class for project plugins.

A project folder ``projects/<snake_name>/project.py`` defines one subclass::

    from volume_cli import HuggingFaceModel, Project

    class MyProject(Project):
        name = "my-project"
        python_version = "3.10"
        models = [HuggingFaceModel(repo_id="org/model", revision="v1.0")]

        def after_install(self, context):
            ...

Plugin modules are imported by every command that lists projects, so they
must not import heavy libraries at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from volume_cli.config.model_sources import ModelSpec


@dataclass(frozen=True)
class HookContext:
    """What a hook gets: absolute paths as seen on this machine."""

    project: str
    python_version: str
    root: Path
    project_folder: Path
    deps_path: Path
    models_dir: Path


class Project:
    """Subclass this in ``projects/<snake_name>/project.py``."""

    name: ClassVar[str] = ""
    python_version: ClassVar[str] = ""
    description: ClassVar[str] = ""
    dependencies_file: ClassVar[str] = "dependencies.yaml"
    models: ClassVar[Sequence[ModelSpec]] = ()
    hf_endpoints: ClassVar[Sequence[str]] = ()
    modelscope_endpoints: ClassVar[Sequence[str]] = ()

    def after_install(self, context: HookContext) -> None:
        """Runs after a new dependency generation became current."""

    def after_models(self, context: HookContext) -> None:
        """Runs after every model of the project is present and verified."""
