"""Whole-volume commands: ``setup`` and ``gc``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from volume_cli.cli.commands.deps import UpgradeOption
from volume_cli.cli.commands.deps import app as deps_app
from volume_cli.cli.commands.models import HfEndpointOption, MsEndpointOption, TimeoutOption, YesOption
from volume_cli.cli.options import (
    DryRunOption,
    IndexUrlOption,
    JsonOption,
    ProjectOption,
    ProjectsDirOption,
    RootOption,
    WaitOption,
)
from volume_cli.cli.render import emit, format_bytes, to_jsonable

if TYPE_CHECKING:
    from volume_cli.deps.gc import GcReport
    from volume_cli.flows.setup import SetupResult
    from volume_cli.layout import VolumeLayout
    from volume_cli.project.definition import ProjectDefinition


def register(app: typer.Typer) -> None:
    _register_setup(app)
    _register_gc(app)
    # The same command where someone managing dependencies looks for it (gc is deps-only).
    _register_gc(deps_app)


def _register_setup(app: typer.Typer) -> None:
    @app.command("setup")
    def setup_command(
        project: ProjectOption,
        root: RootOption = None,
        projects_dir: ProjectsDirOption = None,
        index_url: IndexUrlOption = None,
        hf_endpoint: HfEndpointOption = None,
        modelscope_endpoint: MsEndpointOption = None,
        force: Annotated[
            bool, typer.Option("--force", help="Verify the dependencies and repair damaged files.")
        ] = False,
        upgrade: UpgradeOption = False,
        refresh: Annotated[
            bool, typer.Option("--refresh", help="Ask the hub whether unpinned revisions moved.")
        ] = False,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Print the dependency plan and the models plan; change nothing.")
        ] = False,
        timeout: TimeoutOption = 30.0,
        retries: Annotated[
            int | None,
            typer.Option(
                "--retries",
                metavar="N",
                help="Retries per request (default: 1 for package indexes, 4 for hubs).",
                min=0,
                show_default=False,
            ),
        ] = None,
        wait: WaitOption = 0,
        as_json: JsonOption = False,
    ) -> None:
        """Install the project's dependencies, then download its models; non-zero exit if either failed."""
        from volume_cli.cli import context
        from volume_cli.cli.progress_view import ProgressView
        from volume_cli.deps.uvtool import uv_network
        from volume_cli.errors import VolumeCliError
        from volume_cli.flows import setup as setup_flow

        definition = context.project(projects_dir, project)
        _ = definition.dependencies  # a config error stops here, before any work
        # A dry run must not even initialise the volume's metadata.
        layout = context.layout(root, write=not dry_run)
        with uv_network(timeout=timeout, retries=retries), ProgressView() as progress:
            result = setup_flow.run_setup(
                layout=layout,
                project=definition,
                mirror=index_url,
                force=force,
                hf_endpoints=hf_endpoint,
                modelscope_endpoints=modelscope_endpoint,
                progress=progress,
                wait_seconds=wait,
                upgrade=upgrade,
                refresh=refresh,
                dry_run=dry_run,
                timeout=timeout,
                retries=4 if retries is None else retries,
            )

        def human(console: Console) -> None:
            _render_setup(console, result, layout=layout, definition=definition, dry_run=dry_run)

        emit(result, as_json=as_json, human=human)
        failed = [step for step in result.steps if not step.ok]
        if failed:
            first = failed[0]
            names = ", ".join(step.step for step in failed)
            raise VolumeCliError(f"setup of {definition.name} failed ({names}): {first.error}", hint=first.hint)


def _render_setup(
    console: Console, result: SetupResult, *, layout: VolumeLayout, definition: ProjectDefinition, dry_run: bool
) -> None:
    console.print(f"[bold]setup {result.project}[/] on {layout.root}")
    for step in result.steps:
        mark = "[green]ok[/]    " if step.ok else "[red]FAILED[/]"
        console.print(f"  {mark} {step.step:<7} {step.summary}")
        if step.error:
            console.print(f"         {step.error}", markup=False)
    if dry_run:
        _render_plans(console, result)
        return
    if result.ok:
        deps_path = layout.deps_path(definition.name, definition.python_version)
        console.print(f"PYTHONPATH={deps_path.parent / '.boot' / deps_path.name}")  # pins a generation
        console.print(f"[dim]for workers: volume-cli env --project {definition.name} --mount /runpod-volume[/]")


def _register_gc(app: typer.Typer) -> None:
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


def _render_plans(console: Console, result: SetupResult) -> None:
    """Both plans of a dry run, as `deps install --dry-run` and `models download --dry-run` show them."""
    from volume_cli.cli.commands.deps import render_plan
    from volume_cli.cli.commands.models import render_download

    for step in result.steps:
        if step.result is None:
            continue
        console.print(f"[bold]{step.step} plan[/]")
        if step.step == "deps":
            render_plan(console, step.result.plan)
        else:
            render_download(console, step.result)
