"""A discovered project, validated, with its dependency config loaded on demand."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Annotated

from pydantic import AfterValidator, Field

from volume_cli.config.dependencies import DependencyConfig, PythonVersion, load_dependency_config
from volume_cli.config.model_sources import ModelSpec
from volume_cli.config.strict import StrictModel
from volume_cli.layout import VolumeLayout
from volume_cli.project.base import HookContext, Project

_PROJECT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def check_project_name(value: str) -> str:
    if not _PROJECT_NAME.match(value) or "--" in value:
        raise ValueError(f"project name must be lowercase letters, digits and single hyphens, got {value!r}")
    return value


ProjectName = Annotated[str, AfterValidator(check_project_name)]


def _check_endpoint(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
        raise ValueError(f"endpoint must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


EndpointUrl = Annotated[str, AfterValidator(_check_endpoint)]


def _check_dependencies_file(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or "\\" in value or any(part in {"..", "."} for part in path.parts) or not path.parts:
        raise ValueError(f"dependencies_file must be a file name inside the project folder, got {value!r}")
    return value


DependenciesFile = Annotated[str, AfterValidator(_check_dependencies_file)]


class ProjectSpec(StrictModel):
    """What a plugin class or a project.yaml declares."""

    name: ProjectName
    python_version: PythonVersion
    description: str = ""
    dependencies_file: DependenciesFile = Field(default="dependencies.yaml", min_length=1)
    models: list[ModelSpec] = Field(default_factory=list)
    # Hub endpoints in the order to try (e.g. https://hf-mirror.com then https://huggingface.co);
    # --hf-endpoint / --modelscope-endpoint replace them, and they replace HF_ENDPOINT / MODELSCOPE_ENDPOINT.
    hf_endpoints: list[EndpointUrl] = Field(default_factory=list)
    modelscope_endpoints: list[EndpointUrl] = Field(default_factory=list)


@dataclass(frozen=True, eq=False)
class ProjectDefinition:
    spec: ProjectSpec
    folder: Path
    definition_file: Path
    plugin: Project | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def python_version(self) -> str:
        return self.spec.python_version

    @property
    def models(self) -> list[ModelSpec]:
        return self.spec.models

    @property
    def dependencies_path(self) -> Path:
        return self.folder / self.spec.dependencies_file

    def hook_context(self, layout: VolumeLayout) -> HookContext:
        """What the plugin's hooks are given: where this project's dependencies and the models are."""
        return HookContext(
            project=self.name,
            python_version=self.python_version,
            root=layout.root,
            project_folder=self.folder,
            deps_path=layout.deps_path(self.name, self.python_version),
            models_dir=layout.models_dir,
        )

    @cached_property
    def dependencies(self) -> DependencyConfig:
        return load_dependency_config(self.dependencies_path, plugin_python_version=self.python_version)

    def config_hash(self, *, mirror: str | None) -> str:
        return self.dependencies.content_hash(python_version=self.python_version, mirror=mirror)
