"""``sync apply``: turn a pushed generation into the volume's current one, with a local install's guarantees.

Run by something that sees the mounted volume (a pod), under the project's
writer lock. The apply itself is volume_cli/pushed_apply.py, standard
library only, which a starting worker runs too: check every file the
manifest lists (sizes; sha256 with ``deep``), restore modes and mtimes,
make the models' links, place the lock and model documents, build the
forest under a temporary name, record it, rename it, switch
``pyX.Y/<project>`` with one rename and record the switch. Here are the
CLI's side of it: the lock, the records written through the document models
(``record_switch``, exactly like ``deps install``), the boot refresh and the
result. The old generation serves until the switch, ``deps rollback``
reaches it afterwards, and an intent record keeps gc off the entries while
the forest is built. A second apply waits for the lock and then finds
nothing pending, so two at once build one generation. Killed anywhere, the
next apply converges: the pending manifest is removed only after the switch
is recorded.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from volume_cli import pushed_apply
from volume_cli.deps.documents import GenerationRecord
from volume_cli.deps.record import clear_intent, record_intent, record_switch, repair_state
from volume_cli.errors import SyncManifestError
from volume_cli.fsguard import guard_volume
from volume_cli.layout import VolumeLayout
from volume_cli.progress import Progress
from volume_cli.store.lock import LeaseLock
from volume_cli.store.state import ModelsRecord, update_project_state
from volume_cli.store.writer_locks import project_lock
from volume_cli.sync.manifest import read_pending


@dataclass(frozen=True)
class ApplyResult:
    project: str
    generation: str | None  # None: nothing was pending
    previous_generation: str | None
    switched: bool  # False when the pending generation was current already (a killed apply's)
    files_checked: int
    deep: bool
    modes_restored: int
    links_made: int
    forest_links: int
    superseded: tuple[str, ...]  # older pending generations dropped unapplied
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_pending(
    *, layout: VolumeLayout, project: str, deep: bool, wait_seconds: float, progress: Progress
) -> ApplyResult:
    """Apply the newest pending generation of ``project``; a refused manifest raises before anything changes."""
    started = time.monotonic()
    with project_lock(layout, project, command="sync apply", wait_seconds=wait_seconds, progress=progress) as lease:
        pending = read_pending(layout, project)  # under the lock: a concurrent apply may have just finished
        if not pending:
            return ApplyResult(project, None, None, False, 0, deep, 0, 0, 0, (), time.monotonic() - started)
        python_version = pending[-1].python_version
        guard_volume(layout, project=project, python_version=python_version)
        outcome = pushed_apply.apply_newest(
            str(layout.root),
            [manifest.model_dump(mode="json") for manifest in pending],
            CliRecords(layout, lease, project, python_version),
            deep=deep,
            step=progress.step,
        )
        from volume_cli.consumer_env import write_boot

        write_boot(layout, project, python_version)
    return ApplyResult(
        project=project,
        generation=outcome.generation,
        previous_generation=outcome.previous if outcome.switched else None,
        switched=outcome.switched,
        files_checked=outcome.files_checked,
        deep=deep,
        modes_restored=outcome.modes_restored,
        links_made=outcome.links_made,
        forest_links=outcome.forest_links,
        superseded=tuple(item.generation for item in pending[:-1]),
        seconds=time.monotonic() - started,
    )


class CliRecords:
    """The apply's records written through the document models: the one writer ``deps install`` uses too."""

    def __init__(self, layout: VolumeLayout, lease: LeaseLock, project: str, python_version: str) -> None:
        self.layout = layout
        self.lease = lease
        self.project = project
        self.python_version = python_version

    def ensure_held(self) -> None:
        self.lease.ensure_held()

    def check(self, record: dict[str, Any], models: dict[str, Any] | None) -> None:
        _validated(GenerationRecord, record, "generation record")
        if models is not None:
            _validated(ModelsRecord, models, "models record")

    def clear_intent(self) -> None:
        clear_intent(self.layout, self.project)

    def record_intent(self, *, generation: str, entries: list[str]) -> None:
        record_intent(
            self.layout,
            project=self.project,
            python_version=self.python_version,
            generation=generation,
            entries=entries,
        )

    def repair_state(self) -> None:
        repair_state(self.layout, self.project, self.python_version)

    def record_switch(self, record: dict[str, Any], *, previous: str | None) -> None:
        parsed = _validated(GenerationRecord, record, "generation record")
        record_switch(self.layout, self.project, self.python_version, parsed, previous=previous, new_bytes=0)

    def adopt_models(self, models: dict[str, Any] | None) -> None:
        """The source's models record: every model the manifest carried is present and checked."""
        if models is None:
            return
        source = _validated(ModelsRecord, models, "models record")
        update_project_state(
            self.layout,
            self.project,
            self.python_version,
            lambda state: state if state.models == source else state.model_copy(update={"models": source}),
        )


RecordT = TypeVar("RecordT", bound=BaseModel)


def _validated(cls: type[RecordT], data: dict[str, Any], what: str) -> RecordT:
    """A pushed record as its model; one clear error (not a traceback) when it does not fit."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise SyncManifestError(
            f"the pushed {what} is invalid ({where}: {first['msg']}); the current generation was kept",
            hint="push again from a volume where `volume-cli deps check` passes",
        ) from None
