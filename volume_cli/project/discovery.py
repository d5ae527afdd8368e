"""Finding projects: folders with a project.py plugin or a project.yaml.

Search path, in order: every ``--projects-dir``, then the folders in
``VOLUME_CLI_PROJECTS_PATH`` (os.pathsep-separated), then the default: the
``projects/`` folder of the current directory when it holds projects, else
the projects shipped with volume-cli. No registry to edit: a new folder is
a new project. Two folders declaring one name is an error naming both.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from volume_cli.config.located_yaml import LocatedDocument, load_located_yaml
from volume_cli.config.strict import validation_problems
from volume_cli.errors import ConfigError, DuplicateProjectError, ProjectNotFoundError
from volume_cli.project.base import Project
from volume_cli.project.definition import ProjectDefinition, ProjectSpec

PROJECTS_PATH_ENV = "VOLUME_CLI_PROJECTS_PATH"
PLUGIN_FILE = "project.py"
PROJECT_YAML = "project.yaml"


def bundled_projects_dir() -> Path:
    package_dir = Path(__file__).resolve().parent.parent
    shipped = package_dir / "bundled_projects"
    if shipped.is_dir():
        return shipped
    return package_dir.parent / "projects"  # a source checkout / editable install


def _holds_projects(folder: Path) -> bool:
    try:
        return any((child / PLUGIN_FILE).is_file() or (child / PROJECT_YAML).is_file() for child in folder.iterdir())
    except OSError:
        return False


def search_path(
    extra_dirs: Sequence[str | os.PathLike[str]] = (), *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> list[Path]:
    environ = os.environ if env is None else env
    folders: list[Path] = [Path(folder) for folder in extra_dirs]
    folders += [Path(part) for part in environ.get(PROJECTS_PATH_ENV, "").split(os.pathsep) if part.strip()]
    local = (cwd or Path.cwd()) / "projects"
    folders.append(local if local.is_dir() and _holds_projects(local) else bundled_projects_dir())
    unique: list[Path] = []
    for folder in folders:
        resolved = folder.expanduser().resolve()
        if resolved not in unique:
            unique.append(resolved)
    return unique


@dataclass(frozen=True)
class Discovery:
    projects: dict[str, ProjectDefinition]
    folders: list[Path]

    def get(self, name: str) -> ProjectDefinition:
        try:
            return self.projects[name]
        except KeyError:
            known = ", ".join(sorted(self.projects)) or "none"
            raise ProjectNotFoundError(
                f"no project named {name!r} (found: {known})",
                hint="run: volume-cli projects list   (or add --projects-dir DIR)",
            ) from None


def discover(
    extra_dirs: Sequence[str | os.PathLike[str]] = (), *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Discovery:
    folders = search_path(extra_dirs, env=env, cwd=cwd)
    for folder in folders[: len(extra_dirs)]:
        if not folder.is_dir():
            raise ConfigError([f"{folder}: projects folder does not exist"], hint="check --projects-dir")
    found: dict[str, ProjectDefinition] = {}
    for folder in folders:
        for candidate in _candidate_folders(folder):
            definition = load_project_folder(candidate)
            other = found.get(definition.name)
            if other is not None:
                raise DuplicateProjectError(
                    [f"project {definition.name!r} is defined twice: in {other.folder} and in {candidate}"],
                    hint="rename one of them (the 'name' of its plugin class or project.yaml)",
                )
            found[definition.name] = definition
    return Discovery(projects=dict(sorted(found.items())), folders=folders)


def _candidate_folders(folder: Path) -> list[Path]:
    try:
        children = sorted(child for child in folder.iterdir() if child.is_dir())
    except OSError:
        return []
    return [
        child
        for child in children
        if not child.name.startswith((".", "_"))
        and ((child / PLUGIN_FILE).is_file() or (child / PROJECT_YAML).is_file())
    ]


def load_project_folder(folder: Path) -> ProjectDefinition:
    plugin_file, yaml_file = folder / PLUGIN_FILE, folder / PROJECT_YAML
    if plugin_file.is_file() and yaml_file.is_file():
        raise ConfigError(
            [f"{folder}: has both {PLUGIN_FILE} and {PROJECT_YAML}; keep one"],
            hint="put the settings in the plugin class, or delete project.py if you need no hooks",
        )
    if plugin_file.is_file():
        return _load_plugin(plugin_file)
    return _load_yaml_project(yaml_file)


def _load_yaml_project(path: Path) -> ProjectDefinition:
    document = load_located_yaml(path, hint="fix it, then run: volume-cli projects check")
    if not isinstance(document.data, dict):
        raise ConfigError([document.problem((), "must be a mapping with name and python_version")])
    spec = _validate_spec(document, document.data)
    return ProjectDefinition(spec=spec, folder=path.parent, definition_file=path)


def _validate_spec(document: LocatedDocument, data: dict[str, Any]) -> ProjectSpec:
    try:
        return ProjectSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            validation_problems(document, exc, model=ProjectSpec),
            hint="fix it, then run: volume-cli projects check",
        ) from None


def _load_plugin(path: Path) -> ProjectDefinition:
    hint = "fix the plugin, then run: volume-cli projects check"
    module_name = f"volume_cli_projects.{path.parent.name}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    module = _import_plugin(path, module_name, hint=hint)
    classes = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, Project)
        and value is not Project
        and value.__module__ == module_name
    ]
    if len(classes) != 1:
        found = ", ".join(cls.__name__ for cls in classes) or "none"
        raise ConfigError([f"{path}: must define exactly one subclass of volume_cli.Project (found: {found})"])
    plugin_class = classes[0]
    try:
        data = _plugin_data(plugin_class)
        plugin = plugin_class()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a plugin class is user code: report it, never crash
        raise ConfigError([f"{path}{_plugin_line(path, exc)}: {_failure(exc)}"], hint=hint) from None
    document = LocatedDocument(path=path, data=data, lines={})
    definition_spec = _validate_spec(document, data)
    return ProjectDefinition(spec=definition_spec, folder=path.parent, definition_file=path, plugin=plugin)


def _import_plugin(path: Path, module_name: str, *, hint: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError([f"{path}: cannot be imported"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        sys.modules.pop(module_name, None)
        raise
    except BaseException as exc:  # sys.exit() in a plugin must not end the CLI silently
        sys.modules.pop(module_name, None)
        raise ConfigError(
            [f"{path}{_plugin_line(path, exc)}: importing the plugin failed: {_failure(exc)}"], hint=hint
        ) from None
    return module


def _plugin_data(plugin_class: type[Project]) -> dict[str, Any]:
    return {
        "name": plugin_class.name,
        "python_version": plugin_class.python_version,
        "description": plugin_class.description or (inspect.getdoc(plugin_class) or "").split("\n\n")[0],
        "dependencies_file": plugin_class.dependencies_file,
        "models": _as_list(plugin_class.models, "models"),
        "hf_endpoints": _as_list(plugin_class.hf_endpoints, "hf_endpoints"),
        "modelscope_endpoints": _as_list(plugin_class.modelscope_endpoints, "modelscope_endpoints"),
    }


def _as_list(value: object, attribute: str) -> list[object]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise TypeError(f"{attribute} must be a list, got {type(value).__name__}")
    return [_model_as_data(item) for item in value]


def _plugin_line(path: Path, exc: BaseException) -> str:
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == str(path)]
    return f":{frames[-1].lineno}" if frames else ""


def _failure(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}); a plugin module must only define its class"
    return f"{type(exc).__name__}: {exc}"


def _model_as_data(model: object) -> object:
    dump = getattr(model, "model_dump", None)
    return dump() if callable(dump) else model
