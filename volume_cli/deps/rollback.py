"""``rollback``: make the previous generation current again, with one rename."""

from __future__ import annotations

from dataclasses import dataclass

from volume_cli.deps.documents import read_generation_record
from volume_cli.deps.faults import crash_point
from volume_cli.deps.forest import current_generation, generation_dir, switch_current
from volume_cli.deps.record import reconciled_deps, record_switch, repair_state
from volume_cli.errors import InstallError
from volume_cli.fsguard import guard_volume
from volume_cli.layout import VolumeLayout
from volume_cli.progress import Progress
from volume_cli.project.definition import ProjectDefinition
from volume_cli.store.state import read_project_state
from volume_cli.store.writer_locks import project_lock


@dataclass(frozen=True)
class RollbackResult:
    project: str
    python_version: str
    from_generation: str
    to_generation: str
    dry_run: bool


def rollback(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    progress: Progress,
    wait_seconds: float = 0,
    dry_run: bool = False,
) -> RollbackResult:
    """Switch to the previous generation; the one left becomes the previous (so rollback twice undoes it).

    The lock is not changed: status then reports that the generation differs
    from the lock, and the next install applies the lock again.
    """
    python_version = project.python_version
    with project_lock(
        layout, project.name, command="deps rollback", wait_seconds=wait_seconds, progress=progress
    ) as lease:
        guard_volume(layout, project=project.name, python_version=python_version)
        # A run killed after its switch left state.json one switch behind: the link decides.
        if dry_run:
            recorded = reconciled_deps(layout, project.name, python_version, read_project_state(layout, project.name))
        else:
            recorded = repair_state(layout, project.name, python_version)
        current = current_generation(layout, project.name, python_version)
        previous = recorded.previous_generation if recorded is not None and recorded.generation == current else None
        if current is None:
            raise InstallError(f"{project.name} has no installed generation for Python {python_version}")
        if previous is None or previous == current:
            raise InstallError(
                f"{project.name} has no previous generation to roll back to",
                hint="a previous generation exists after a second install",
            )
        record = read_generation_record(layout, project.name, previous)
        if record is None or not generation_dir(layout, project.name, python_version, previous).is_dir():
            raise InstallError(
                f"previous generation {previous} of {project.name} is gone (collected by gc?)",
                hint="run: volume-cli deps install",
            )
        gone = [entry.entry for entry in record.entries if not (layout.store_dir / entry.entry).is_dir()]
        if gone:
            # One stat per entry: switching onto a generation with holes would break every worker's imports.
            raise InstallError(
                f"previous generation {previous} of {project.name} is incomplete: {len(gone)} store "
                f"entries are gone ({', '.join(gone[:5])}{', ...' if len(gone) > 5 else ''}); nothing was switched",
                hint="run: volume-cli deps install",
            )
        if not dry_run:
            lease.ensure_held()
            switch_current(layout, project.name, python_version, previous)
            crash_point("rollback-switched")
            record_switch(layout, project.name, python_version, record, previous=current, new_bytes=0)
    return RollbackResult(project.name, python_version, current, previous, dry_run)
