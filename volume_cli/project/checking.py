"""``projects check``: validate every project and collect all its problems."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from volume_cli.errors import ConfigError
from volume_cli.project.definition import ProjectDefinition
from volume_cli.project.discovery import BrokenProject, Discovery, discover


@dataclass(frozen=True)
class ProjectCheck:
    name: str
    folder: Path
    problems: list[str] = field(default_factory=list)
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ProjectCheckReport:
    projects: list[ProjectCheck]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.projects)

    @property
    def first_failure(self) -> ProjectCheck | None:
        return next((check for check in self.projects if not check.ok), None)


def check_projects(extra_dirs: Sequence[str | os.PathLike[str]] = (), *, only: str | None = None) -> ProjectCheckReport:
    """Every project's problems, broken folders included; one project's problem never hides the others."""
    discovery: Discovery = discover(extra_dirs)
    checks = [_check(definition) for definition in discovery.projects.values()]
    checks += [_broken(entry) for entry in discovery.broken]
    checks.sort(key=lambda check: (check.name, str(check.folder)))
    if only is None:
        return ProjectCheckReport(projects=checks, notes=list(discovery.notes.values()))
    selected = [check for check in checks if check.name == only]
    if not selected:
        discovery.get(only)  # raises: not found, naming the folders that could not be read
    note = discovery.note_for(only)
    return ProjectCheckReport(projects=selected, notes=[note] if note else [])


def _check(definition: ProjectDefinition) -> ProjectCheck:
    try:
        _ = definition.dependencies
        problems: list[str] = []
    except ConfigError as exc:
        problems = exc.problems
    return ProjectCheck(name=definition.name, folder=definition.folder, problems=problems)


def _broken(entry: BrokenProject) -> ProjectCheck:
    name = entry.name or entry.folder.name.lower().replace("_", "-")
    return ProjectCheck(name=name, folder=entry.folder, problems=list(entry.problems), hint=entry.hint)
