"""``volume-cli sync push|apply|status``: one project on several volumes through their S3 APIs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from volume_cli.cli.options import DryRunOption, JsonOption, ProjectOption, RootOption, WaitOption
from volume_cli.cli.render import emit
from volume_cli.layout import VolumeLayout
from volume_cli.units import format_bytes

if TYPE_CHECKING:
    from volume_cli.remote.config import Remote
    from volume_cli.sync.apply import ApplyResult
    from volume_cli.sync.push import PushResult
    from volume_cli.sync.status import SyncStatus

app = typer.Typer(
    help="Push a project's generation to other volumes through S3, apply it there, compare them.",
    no_args_is_help=True,
)

ToOption = Annotated[
    str, typer.Option("--to", metavar="NAME[,NAME...]", help="Remotes (see: volume-cli remote list), comma-separated.")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", metavar="SECONDS", min=0.1, help="Connect and read timeout per request.")
]


def _remotes(names: str) -> list[Remote]:
    from volume_cli.errors import RemoteConfigError
    from volume_cli.remote.config import load_remotes, remotes_path

    path = remotes_path(os.environ)
    known = load_remotes(path).remotes
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        raise RemoteConfigError(
            f"no remote named {', '.join(map(repr, unknown)) or '(none given)'} in {path}",
            hint="volume-cli remote list  (or: volume-cli remote add NAME --endpoint URL --bucket B)",
        )
    return [known[name] for name in wanted]


def _installed(root: Path | None, project: str) -> tuple[VolumeLayout, str]:
    """The source volume and the project's Python there (push needs no project definition, only what is installed)."""
    from volume_cli.cli import context
    from volume_cli.sync.manifest import installed_python

    layout = context.layout(root, write=False)
    return layout, installed_python(layout, project)


@app.command("push")
def push_command(
    project: ProjectOption,
    to: ToOption,
    root: RootOption = None,
    dry_run: DryRunOption = False,
    multipart_mib: Annotated[
        float, typer.Option("--multipart-threshold", metavar="MIB", min=5, help="Files this large go in parts.")
    ] = 256,
    part_mib: Annotated[
        float, typer.Option("--part-size", metavar="MIB", min=5, max=500, help="Size of one part of a large file.")
    ] = 64,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Upload what each volume lacks of the project's current generation, then its manifest (--dry-run: the plan)."""
    from volume_cli.cli.progress_view import ProgressView
    from volume_cli.sync.journal import default_journal_dir
    from volume_cli.sync.push import TransferSettings, push

    remotes = _remotes(to)
    layout, python_version = _installed(root, project)
    settings = TransferSettings(
        multipart_threshold=int(multipart_mib * (1 << 20)), part_size=int(part_mib * (1 << 20)), timeout=timeout
    )
    with ProgressView() as progress:
        result = push(
            layout=layout,
            project=project,
            python_version=python_version,
            remotes=remotes,
            environ=os.environ,
            journal_dir=default_journal_dir(os.environ),
            dry_run=dry_run,
            progress=progress,
            settings=settings,
        )
    emit(result, as_json=as_json, human=lambda console: _render_push(console, result))


def _render_push(console: Console, result: PushResult) -> None:
    console.print(
        f"{result.project} generation {result.generation}: {result.manifest_files} files, "
        f"{format_bytes(result.manifest_bytes)}",
        markup=False,
    )
    for volume in result.volumes:
        plan = volume.plan
        if plan.status == "applied":
            line = "already applied there"
        elif plan.status == "pushed":
            line = "already pushed (pending apply there)"
        elif result.dry_run:
            line = (
                f"would upload {len(plan.uploads)} files ({format_bytes(plan.upload_bytes)}), "
                f"{len(plan.missing_entries)} store entries missing, {plan.skipped_files} files there already"
            )
        else:
            line = (
                f"uploaded {volume.files_uploaded} files ({format_bytes(volume.bytes_uploaded)}), "
                f"skipped {plan.skipped_files}; {volume.requests} requests in {volume.seconds:.1f}s; pending apply"
            )
        console.print(f"  {plan.remote} ({plan.bucket}): {line}", markup=False)
    if not result.dry_run and any(volume.plan.status != "applied" for volume in result.volumes):
        console.print(
            f"next: on a pod with that volume mounted: volume-cli sync apply --project {result.project}", markup=False
        )


@app.command("apply")
def apply_command(
    project: ProjectOption,
    root: RootOption = None,
    deep: Annotated[bool, typer.Option("--deep", help="Hash every file (sha256) instead of checking sizes.")] = False,
    wait: WaitOption = 0,
    as_json: JsonOption = False,
) -> None:
    """On a pod with the volume mounted: make the pushed generation current (atomic switch; rollback works)."""
    from volume_cli.cli import context
    from volume_cli.cli.progress_view import ProgressView
    from volume_cli.flows.sync import apply_pushed

    layout = context.layout(root, write=True)
    with ProgressView() as progress:
        result = apply_pushed(layout=layout, project=project, deep=deep, wait_seconds=wait, progress=progress)
    emit(result, as_json=as_json, human=lambda console: _render_apply(console, result))


def _render_apply(console: Console, result: ApplyResult) -> None:
    _render_apply_switch(console, result)
    if result.packs_written:
        console.print(f"{result.project}: {result.packs_written} store entries packed for workers", markup=False)
    if result.packs_error:
        console.print(f"warning: packs not written: {result.packs_error}", markup=False)


def _render_apply_switch(console: Console, result: ApplyResult) -> None:
    if result.generation is None:
        console.print(f"{result.project}: no pushed generation is pending on this volume", markup=False)
        return
    if not result.switched:
        console.print(
            f"{result.project}: {result.generation} was current already; pending record cleared", markup=False
        )
        return
    check = "sha256" if result.deep else "sizes"
    console.print(
        f"{result.project}: switched to {result.generation} ({result.files_checked} files checked by {check}, "
        f"{result.modes_restored} modes restored, {result.forest_links} links)",
        markup=False,
    )
    if result.previous_generation:
        console.print(f"undo with: volume-cli deps rollback --project {result.project}", markup=False)


@app.command("status")
def status_command(
    project: ProjectOption,
    to: ToOption,
    root: RootOption = None,
    timeout: TimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Per volume: the generation applied, the ones pending, and which store entries differ from here."""
    from volume_cli.errors import RootError, SyncManifestError
    from volume_cli.sync.status import sync_status

    remotes = _remotes(to)
    layout: VolumeLayout | None = None
    python_version: str | None = None
    try:
        layout, python_version = _installed(root, project)
    except (RootError, SyncManifestError):
        pass  # the remote volumes' status needs no local install
    result = sync_status(
        layout=layout,
        project=project,
        python_version=python_version,
        remotes=remotes,
        environ=os.environ,
        timeout=timeout,
    )
    emit(result, as_json=as_json, human=lambda console: _render_status(console, result))


def _render_status(console: Console, result: SyncStatus) -> None:
    console.print(f"{result.project}: here {result.local_generation or '(not installed)'}", markup=False)
    for volume in result.volumes:
        pending = ", ".join(volume.pending) or "none"
        state = "in step" if volume.in_step else "differs"
        console.print(
            f"  {volume.remote} ({volume.bucket}): applied {volume.applied or 'none'}, pending {pending}; {state}",
            markup=False,
        )
        if volume.entries_missing:
            console.print(f"    lacks {len(volume.entries_missing)} entries: {', '.join(volume.entries_missing[:5])}")
        if volume.entries_extra:
            console.print(f"    has {len(volume.entries_extra)} other entries: {', '.join(volume.entries_extra[:5])}")
