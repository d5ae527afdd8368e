"""``projects check``: validate every project and collect all its problems."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from volume_cli.errors import ConfigError
from volume_cli.project.discovery import Discovery, discover


@dataclass(frozen=True)
class ProjectCheck:
    name: str
    folder: Path
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class CheckReport:
    projects: list[ProjectCheck]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.projects)

    @property
    def first_failure(self) -> ProjectCheck | None:
        return next((check for check in self.projects if not check.ok), None)


def check_projects(extra_dirs: Sequence[str | os.PathLike[str]] = (), *, only: str | None = None) -> CheckReport:
    """Discovery problems raise; per-project config problems are collected."""
    discovery: Discovery = discover(extra_dirs)
    names = [only] if only else list(discovery.projects)
    checks: list[ProjectCheck] = []
    for name in names:
        definition = discovery.get(name)
        try:
            _ = definition.dependencies
            problems: list[str] = []
        except ConfigError as exc:
            problems = exc.problems
        checks.append(ProjectCheck(name=name, folder=definition.folder, problems=problems))
    return CheckReport(projects=checks)
