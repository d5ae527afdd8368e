"""Whole-volume commands: ``setup`` and ``gc``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from volume_cli.cli.commands.deps import UpgradeOption
from volume_cli.cli.commands.gc import register_gc
from volume_cli.cli.commands.models import HfEndpointOption, MsEndpointOption, TimeoutOption
from volume_cli.cli.options import (
    IndexUrlOption,
    JsonOption,
    ProjectOption,
    ProjectsDirOption,
    RootOption,
    WaitOption,
)
from volume_cli.cli.render import emit

if TYPE_CHECKING:
    from volume_cli.flows.setup import SetupResult
    from volume_cli.layout import VolumeLayout
    from volume_cli.project.definition import ProjectDefinition


def register(app: typer.Typer) -> None:
    _register_setup(app)
    register_gc(app)


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
