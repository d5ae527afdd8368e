"""``sync apply`` with what follows it: the runtime copy, as after a local install."""

from __future__ import annotations

from typing import TYPE_CHECKING

from volume_cli.layout import VolumeLayout
from volume_cli.progress import Progress

if TYPE_CHECKING:  # the sync package is imported when the flow runs, not when the CLI starts
    from volume_cli.sync.apply import ApplyResult


def apply_pushed(
    *, layout: VolumeLayout, project: str, deep: bool, wait_seconds: float, progress: Progress
) -> ApplyResult:
    """Apply the generation a ``sync push`` left pending; then refresh the runtime copy workers import."""
    from volume_cli import consumer_env
    from volume_cli.sync.apply import apply_pending

    result = apply_pending(layout=layout, project=project, deep=deep, wait_seconds=wait_seconds, progress=progress)
    if result.generation is not None:
        consumer_env.write_runtime_copy(layout)
    return result
