"""Turning CLI options into the explicit inputs the core takes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from volume_cli.cli.render import stderr_console
from volume_cli.layout import VolumeLayout
from volume_cli.root import ResolvedRoot, require_writable, resolve_root

if TYPE_CHECKING:
    from volume_cli.project.definition import ProjectDefinition
    from volume_cli.project.discovery import Discovery


def projects(projects_dirs: Sequence[Path] | None) -> Discovery:
    from volume_cli.project.discovery import discover  # here: commands without projects skip its imports

    discovery = discover(list(projects_dirs or ()))
    for note in discovery.notes.values():
        stderr_console.print(f"note: {note}", markup=False)
    for broken in discovery.broken:
        stderr_console.print(f"warning: skipped a broken project: {broken.problems[0]}", markup=False)
    return discovery


def project(projects_dirs: Sequence[Path] | None, name: str) -> ProjectDefinition:
    from volume_cli.project.discovery import discover

    # Only the asked-for project matters: another project's broken folder must not stop this command.
    discovery = discover(list(projects_dirs or ()))
    definition = discovery.get(name)
    note = discovery.note_for(name)
    if note:
        stderr_console.print(f"note: {note}", markup=False)
    return definition


def read_root(root: Path | None) -> ResolvedRoot:
    return resolve_root(root)


def layout(root: Path | None, *, write: bool) -> VolumeLayout:
    """The one way a command gets its volume: ``write`` checks the root is writable and initialises it."""
    resolved = resolve_root(root)
    if not write:
        return VolumeLayout(resolved.path)
    from volume_cli import __version__
    from volume_cli.store.state import ensure_volume_info

    require_writable(resolved.path)
    volume = VolumeLayout(resolved.path)
    ensure_volume_info(volume, __version__)  # one read once the volume is initialised
    return volume
