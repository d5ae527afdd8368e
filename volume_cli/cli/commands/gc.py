"""``volume-cli gc`` and ``volume-cli deps gc``: one command in two places (gc is deps-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from volume_cli.cli.options import DryRunOption, JsonOption, RootOption, WaitOption, YesOption
from volume_cli.cli.render import emit, format_bytes, to_jsonable

if TYPE_CHECKING:
    from volume_cli.deps.gc import GcReport


def register_gc(app: typer.Typer) -> None:
    """``gc`` on ``app``: the top level, and ``deps`` where someone managing dependencies looks for it."""

    @app.command("gc")
    def gc_command(
        root: RootOption = None,
        grace_hours: Annotated[
            float,
            typer.Option(
                "--grace-hours",
                metavar="HOURS",
                help="Keep old generations this long: workers may still run on them.",
                min=0,
            ),
        ] = 24.0,
        drop_previous: Annotated[
            bool,
            typer.Option(
                "--drop-previous", help="Also remove each project's previous generation (no rollback after this)."
            ),
        ] = False,
        yes: YesOption = False,
        dry_run: DryRunOption = False,
        wait: WaitOption = 0,
        as_json: JsonOption = False,
        uv_cache: Annotated[
            bool,
            typer.Option("--uv-cache", help="Also empty uv's package cache on this pod's disk (uv cache clean)."),
        ] = False,
    ) -> None:
        """Remove generations that are neither current nor previous, then store entries nothing uses."""
        from volume_cli.cli import context
        from volume_cli.cli.progress_view import ProgressView
        from volume_cli.deps import gc
        from volume_cli.uv_cache import clean_uv_cache

        layout = context.layout(root, write=True)

        def collect(*, plan_only: bool) -> GcReport:
            with ProgressView() as progress:
                return gc(
                    layout=layout,
                    grace_seconds=grace_hours * 3600,
                    dry_run=plan_only,
                    progress=progress,
                    wait_seconds=wait,
                    drop_previous=drop_previous,
                )

        # With --yes nothing is asked: a plan first would only repeat the reading the removal does under its lock.
        report = collect(plan_only=dry_run or not yes)
        if report.dry_run and not dry_run:
            if report.generations_removed or report.entries_removed:
                _confirm_gc(report, yes=yes, as_json=as_json)
            report = collect(plan_only=False)
        cleaned = clean_uv_cache(dry_run=dry_run) if uv_cache else None

        def human(console: Console) -> None:
            verb = "would remove" if report.dry_run else "removed"
            for generation in report.generations_removed:
                console.print(f"{verb} generation {generation}")
            for entry in report.entries_removed:
                console.print(f"{verb} store entry {entry}", markup=False)
            console.print(
                f"{verb} {len(report.generations_removed)} generation(s) and {len(report.entries_removed)} store "
                f"entr{'y' if len(report.entries_removed) == 1 else 'ies'}, {format_bytes(report.bytes_freed)}; "
                f"kept {report.generations_kept} generation(s), {report.entries_kept} entries"
                + (f" ({len(report.young_entries_kept)} too young to judge)" if report.young_entries_kept else "")
            )
            if cleaned is not None:
                console.print(f"{verb} uv cache {cleaned.path}: {format_bytes(cleaned.bytes_freed)}", markup=False)

        emit(report if cleaned is None else {**to_jsonable(report), "uv_cache": cleaned}, as_json=as_json, human=human)


def _confirm_gc(report: GcReport, *, yes: bool, as_json: bool) -> None:
    from volume_cli.cli.confirm import confirm_removal

    what = (
        f"{len(report.generations_removed)} generation(s) and {len(report.entries_removed)} store "
        f"entr{'y' if len(report.entries_removed) == 1 else 'ies'}, {format_bytes(report.bytes_freed)}"
    )
    if not yes and not as_json:
        stderr = Console(stderr=True)
        for generation in report.generations_removed:
            stderr.print(f"would remove generation {generation}", markup=False)
        for entry in report.entries_removed:
            stderr.print(f"would remove store entry {entry}", markup=False)
    confirm_removal(what, yes=yes, as_json=as_json, command="volume-cli gc")
