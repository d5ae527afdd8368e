"""``deps install`` and ``deps list`` with what follows them.

After an install the standalone runtime file on the volume is refreshed
(workers with nothing installed import it); ``setup`` installs through the
same function, so the copy is written from this one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from volume_cli.layout import VolumeLayout
from volume_cli.progress import Progress
from volume_cli.project.definition import ProjectDefinition
from volume_cli.redact import redact_url

if TYPE_CHECKING:  # the deps engine is imported when a flow runs, not when the CLI starts
    from volume_cli.deps import InstallResult, PackageRow


def install_deps(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    mirror: str | None,
    progress: Progress,
    force: bool = False,
    upgrade: bool = False,
    dry_run: bool = False,
    wait_seconds: float = 0,
) -> InstallResult:
    """``deps.install``, then (unless a dry run) the runtime copy a worker without volume-cli imports."""
    from volume_cli import consumer_env
    from volume_cli.deps import install

    result = install(
        layout=layout,
        project=project,
        mirror=mirror,
        force=force,
        upgrade=upgrade,
        dry_run=dry_run,
        progress=progress,
        wait_seconds=wait_seconds,
    )
    if not dry_run:
        consumer_env.write_runtime_copy(layout)
    return result


@dataclass(frozen=True)
class GroupListing:
    group: str
    index_url: str  # credentials redacted
    index_source: str  # group (its own index_url) | mirror | PyPI
    extra_index_urls: tuple[str, ...]
    no_deps: bool
    description: str | None
    packages: tuple[str, ...]


@dataclass(frozen=True)
class DepsListing:
    project: str
    python_version: str
    groups: tuple[GroupListing, ...]
    packages: tuple[PackageRow, ...]  # empty without a volume: the config alone


def list_deps(*, layout: VolumeLayout | None, project: ProjectDefinition, mirror: str | None) -> DepsListing:
    """The groups with the index each one uses, and (with a volume) desired against installed per package."""
    from volume_cli.deps import list_packages

    groups = tuple(
        GroupListing(
            group=name,
            index_url=redact_url(group.effective_index_url(mirror)),
            index_source="group" if group.index_url else ("mirror" if mirror else "PyPI"),
            extra_index_urls=tuple(redact_url(url) for url in group.extra_index_urls),
            no_deps=group.no_deps,
            description=group.description,
            packages=tuple(group.packages),
        )
        for name, group in project.dependencies.ordered_groups
    )
    packages = () if layout is None else tuple(list_packages(layout=layout, project=project, mirror=mirror))
    return DepsListing(project=project.name, python_version=project.python_version, groups=groups, packages=packages)
