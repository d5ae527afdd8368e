"""Finding projects: folders with a project.py plugin or a project.yaml.

Search path, in order: every ``--projects-dir``, then the folders in
``VOLUME_CLI_PROJECTS_PATH`` (os.pathsep-separated), then the default: the
``projects/`` folder of the current directory when it holds projects, else
the projects shipped with volume-cli. No registry to edit: a new folder is
a new project. A folder that cannot be loaded is reported as broken and
fails only the commands that ask for it. Two of the user's folders
declaring one name make that name an error naming both; a user's folder
declaring a bundled project's name wins over the bundled one, with a note.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from volume_cli.config.dependencies import load_dependency_config
from volume_cli.config.located_yaml import LocatedDocument, load_located_yaml
from volume_cli.config.strict import validation_problems
from volume_cli.errors import ConfigError, DuplicateProjectError, ProjectNotFoundError
from volume_cli.project.base import Project
from volume_cli.project.definition import ProjectDefinition, ProjectSpec

PROJECTS_PATH_ENV = "VOLUME_CLI_PROJECTS_PATH"
PLUGIN_FILE = "project.py"
PROJECT_YAML = "project.yaml"
DEPENDENCIES_YAML = "dependencies.yaml"


def bundled_projects_dir() -> Path:
    package_dir = Path(__file__).resolve().parent.parent
    shipped = package_dir / "bundled_projects"
    if shipped.is_dir():
        return shipped
    return package_dir.parent / "projects"  # a source checkout / editable install


def _holds_projects(folder: Path) -> bool:
    """Whether ./projects is the user's: then it replaces the bundled projects, even if some are unreadable."""
    try:
        children = [child for child in folder.iterdir() if child.is_dir() and not child.name.startswith((".", "_"))]
    except OSError:
        return False
    return any(_may_be_project(child) for child in children)


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
class BrokenProject:
    """A project folder that could not be loaded; only commands that ask for it fail."""

    folder: Path
    problems: list[str]
    hint: str | None = None
    name: str | None = None  # known when the folder loaded but its name clashes
    duplicate: bool = False
    bundled: bool = False

    @property
    def names(self) -> set[str]:
        """Names a user may call it by: its declared name, else its folder's name."""
        guess = self.folder.name.lower().replace("_", "-")
        return {self.name, guess} if self.name else {guess}

    def error(self) -> ConfigError:
        if self.duplicate:
            return DuplicateProjectError(self.problems, hint=self.hint)
        return ConfigError(self.problems, hint=self.hint or "fix it, then run: volume-cli projects check")


@dataclass(frozen=True)
class Discovery:
    projects: dict[str, ProjectDefinition]
    folders: list[Path]
    broken: list[BrokenProject] = field(default_factory=list)
    # Per project name: why this folder was chosen over another (a user's project shadowing a bundled one).
    notes: dict[str, str] = field(default_factory=dict)
    bundled: frozenset[str] = frozenset()  # names that resolved to a project shipped with volume-cli

    def get(self, name: str) -> ProjectDefinition:
        mine = [broken for broken in self.broken if name in broken.names and not broken.bundled]
        if name in self.projects and not (mine and name in self.bundled):
            return self.projects[name]
        # The user's own broken copy of a bundled project: its problem, never the bundled package set.
        for broken in mine or [broken for broken in self.broken if name in broken.names]:
            raise broken.error()
        known = ", ".join(sorted(self.projects)) or "none"
        unread = f"; {len(self.broken)} project folder(s) could not be read" if self.broken else ""
        raise ProjectNotFoundError(
            f"no project named {name!r} (found: {known}){unread}",
            hint="run: volume-cli projects check   (or add --projects-dir DIR)"
            if self.broken
            else "run: volume-cli projects list   (or add --projects-dir DIR)",
        )

    def note_for(self, name: str) -> str | None:
        return self.notes.get(name)


def discover(
    extra_dirs: Sequence[str | os.PathLike[str]] = (), *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Discovery:
    """Every project on the search path; a broken folder is recorded, never fatal for the others."""
    folders = search_path(extra_dirs, env=env, cwd=cwd)
    for folder in folders[: len(extra_dirs)]:
        if not folder.is_dir():
            raise ConfigError([f"{folder}: projects folder does not exist"], hint="check --projects-dir")
    bundled = bundled_projects_dir().resolve()
    collected = _Collected()
    for folder in folders:
        try:
            candidates = _candidate_folders(folder)
        except FileNotFoundError:
            continue
        except OSError as exc:
            problem = f"{folder}: cannot list this projects folder: {exc.strerror or exc}"
            collected.broken.append(BrokenProject(folder=folder, problems=[problem], hint=f"check: ls -ld {folder}"))
            continue
        for candidate in candidates:
            try:
                definition = load_project_folder(candidate)
            except ConfigError as exc:
                broken = BrokenProject(
                    folder=candidate, problems=exc.problems, hint=exc.hint, bundled=folder == bundled
                )
                collected.broken.append(broken)
                continue
            collected.add(definition, bundled=folder == bundled)
            note = adoption_note(definition)
            if note and definition.name not in collected.notes:
                collected.notes[definition.name] = note
    return Discovery(
        projects=dict(sorted(collected.found.items())),
        folders=folders,
        broken=collected.broken,
        notes=collected.notes,
        bundled=frozenset(collected.bundled),
    )


@dataclass
class _Collected:
    found: dict[str, ProjectDefinition] = field(default_factory=dict)
    bundled: set[str] = field(default_factory=set)
    broken: list[BrokenProject] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    clashing: dict[str, Path] = field(default_factory=dict)  # name -> the first folder that declared it

    def add(self, definition: ProjectDefinition, *, bundled: bool) -> None:
        name = definition.name
        other = self.found.get(name)
        if name in self.clashing:
            self._clash(name, self.clashing[name], definition.folder, both=False)
        elif other is None:
            self.found[name] = definition
            if bundled:
                self.bundled.add(name)
        elif bundled != (name in self.bundled):
            # The user's own folder always wins over the copy shipped with volume-cli, and says so.
            mine, shipped = (other, definition) if bundled else (definition, other)
            self.found[name] = mine
            self.bundled.discard(name)
            self.notes[name] = f"project {name!r}: using {mine.folder}; it shadows the bundled one in {shipped.folder}"
        else:
            # Two folders of the user's: neither is picked behind their back.
            del self.found[name]
            self.clashing[name] = other.folder
            self._clash(name, other.folder, definition.folder, both=True)

    def _clash(self, name: str, first: Path, folder: Path, *, both: bool) -> None:
        problem = f"project {name!r} is defined twice: in {first} and in {folder}"
        hint = "rename one of them (the 'name' of its plugin class or project.yaml)"
        for place in (first, folder) if both else (folder,):
            self.broken.append(BrokenProject(folder=place, problems=[problem], hint=hint, name=name, duplicate=True))


def _candidate_folders(folder: Path) -> list[Path]:
    """Subfolders that hold, or may hold, a project: an unreadable one is reported by loading it, not skipped."""
    children = sorted(child for child in folder.iterdir() if child.is_dir())
    return [child for child in children if not child.name.startswith((".", "_")) and _may_be_project(child)]


def _may_be_project(child: Path) -> bool:
    try:
        names = set(os.listdir(child))
    except OSError:
        return True
    return bool(names & {PLUGIN_FILE, PROJECT_YAML, DEPENDENCIES_YAML})


def load_project_folder(folder: Path) -> ProjectDefinition:
    plugin_file, yaml_file = folder / PLUGIN_FILE, folder / PROJECT_YAML
    try:
        has_plugin, has_yaml = plugin_file.is_file(), yaml_file.is_file()  # is_file raises for an unreadable folder
    except OSError as exc:
        raise ConfigError(
            [f"{folder}: cannot read the project folder: {exc.strerror or exc}"], hint=f"check: ls -ld {folder}"
        ) from None
    if not has_plugin and not has_yaml:
        return _adopt_dependencies_only(folder)
    if has_plugin and has_yaml:
        raise ConfigError(
            [f"{folder}: has both {PLUGIN_FILE} and {PROJECT_YAML}; keep one"],
            hint="put the settings in the plugin class, or delete project.py if you need no hooks",
        )
    if has_plugin:
        return _load_plugin(plugin_file)
    return _load_yaml_project(yaml_file)


def adoption_note(definition: ProjectDefinition) -> str | None:
    """`projects list` says which projects were adopted from a bare dependencies.yaml (the original tool's layout)."""
    if definition.definition_file.name != DEPENDENCIES_YAML:
        return None
    note = f"project {definition.name!r}: adopted from {definition.definition_file} (metadata.project)"
    metadata = definition.dependencies.metadata if definition.dependencies_path.is_file() else None
    if metadata is not None and metadata.unknown_keys:
        note += f"; informational metadata kept as is: {', '.join(metadata.unknown_keys)}"
    return note + f"; to write a project.yaml: volume-cli projects import {definition.folder}"


def _adopt_dependencies_only(folder: Path) -> ProjectDefinition:
    """A folder of the original tool (dependencies.yaml naming its project in metadata) is a project as it is."""
    from volume_cli.project.legacy_import import LEGACY_CONFIG, read_legacy_config

    path = folder / DEPENDENCIES_YAML
    metadata = load_dependency_config(path).metadata if path.is_file() else None
    if metadata is None or not metadata.project:
        raise _no_definition_error(folder)
    # The original config.py is read with ast, never imported: it needs the old tool's base class.
    legacy = read_legacy_config(folder / LEGACY_CONFIG) if (folder / LEGACY_CONFIG).is_file() else None
    data: dict[str, Any] = {
        "name": metadata.project,
        "python_version": metadata.python_version or (legacy.python_version if legacy else None) or "3.10",
        "description": metadata.description,
        "models": legacy.models if legacy else [],
    }
    document = LocatedDocument(path=path, data=data, lines={})
    return ProjectDefinition(spec=_validate_spec(document, data), folder=folder, definition_file=path)


def _no_definition_error(folder: Path) -> ConfigError:
    """A folder without a project file (only a dependencies.yaml?): say so, never skip it or use a namesake."""
    python, name = "3.10", folder.name.lower().replace("_", "-")
    try:
        declared = load_dependency_config(folder / DEPENDENCIES_YAML).metadata
    except ConfigError:
        declared = None
    if declared is not None:
        # What its own metadata says, so the suggested project.yaml matches it.
        python, name = declared.python_version or python, declared.project or name
    return ConfigError(
        [f"{folder}: no project.yaml or project.py file, so it is not a project yet"],
        hint=f'add {folder / PROJECT_YAML} with the lines  name: {name}  and  python_version: "{python}"',
    )


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
        with contextlib.redirect_stdout(sys.stderr):
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
        # stdout carries --json and `eval "$(volume-cli env)"` output: a plugin's print() goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
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
