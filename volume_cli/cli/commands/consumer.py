"""``volume-cli env`` and ``volume-cli doctor``: the worker's side of the volume."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.markup import escape

from volume_cli.cli.options import JsonOption, ProjectOption, ProjectsDirOption, RootOption, json_flag
from volume_cli.cli.render import emit, stderr_console, to_jsonable

if TYPE_CHECKING:
    from volume_cli.consumer_env import EnvFormat


def register(app: typer.Typer) -> None:
    _register_env(app)
    _register_doctor(app)


def _register_env(app: typer.Typer) -> None:
    @app.command("env")
    def env_command(
        project: ProjectOption,
        mount: Annotated[
            Path | None,
            typer.Option(
                "--mount",
                metavar="PATH",
                help="Where the consumer sees the volume, e.g. /runpod-volume. Default: the root.",
            ),
        ] = None,
        local_cache: Annotated[
            Path | None,
            typer.Option(
                "--local-cache",
                metavar="DIR",
                help="Folder on the worker's local disk for run-time caches (numba, HF modules...) and the "
                "local copy of the dependencies. Default: $VOLUME_CLI_LOCAL_CACHE or /tmp/volume-cli-cache.",
            ),
        ] = None,
        output_format: Annotated[
            str,
            typer.Option(
                "--format", metavar="shell|dotenv|dockerfile|json", help="shell (for eval), dotenv, dockerfile or json."
            ),
        ] = "shell",
        as_json: Annotated[bool, typer.Option("--json", callback=json_flag, help="Same as --format json.")] = False,
        root: RootOption = None,
        projects_dir: ProjectsDirOption = None,
    ) -> None:
        """Print PYTHONPATH and model cache variables for a worker: eval "$(volume-cli env -p P)"."""
        from volume_cli.cli import context
        from volume_cli.consumer_env import render_env
        from volume_cli.errors import UsageError
        from volume_cli.flows.env import worker_env

        if as_json:
            output_format = "json"
        if output_format not in {"shell", "dotenv", "dockerfile", "json"}:
            raise UsageError(f"--format must be shell, dotenv, dockerfile or json, got {output_format!r}")
        definition = context.project(projects_dir, project)
        layout = context.layout(root, write=False)
        result = worker_env(layout=layout, project=definition, mount=mount, local_cache=local_cache)
        sys.stdout.write(render_env(result, cast("EnvFormat", output_format)))
        if not result.models_complete:
            # stderr: stdout is eval'd or pasted into a Dockerfile.
            stderr_console.print(
                f"warning: models of {definition.name} are not all on the volume, so HF_HUB_OFFLINE is not set "
                f"(next: volume-cli models download --project {definition.name})",
                markup=False,
            )


def _register_doctor(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor_command(
        project: ProjectOption,
        root: RootOption = None,
        projects_dir: ProjectsDirOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Run the worker's start-up checks (python version, deps, models) from here."""
        from volume_cli.cli import context
        from volume_cli.consumer_env import declared_models_hash
        from volume_cli.errors import ProjectNotFoundError, RuntimeCheckError
        from volume_cli.flows.doctor import doctor

        try:  # with the definition at hand, models downloaded for an older list are not enough
            models_hash: str | None = declared_models_hash(context.project(projects_dir, project))
        except ProjectNotFoundError:
            models_hash = None
        report = doctor(root=context.read_root(root).path, project=project, models_hash=models_hash)
        found, warnings = report.found, report.warnings

        def human(console: Console) -> None:
            console.print(f"project  {found.project}")
            console.print(f"root     {found.root}")
            console.print(f"python   needs {found.python_version or '?'}, this is {found.running_python}")
            console.print(f"deps     {found.deps_generation or 'missing'}")
            console.print(f"models   {'complete' if found.models_complete else 'missing'}")
            if report.pending:  # a sync push waits for its apply
                console.print(report.pending, markup=False)
            for warning in warnings:
                console.print(f"[bold yellow]warning:[/] {escape(warning)}")
            if found.ok:
                console.print("[green]ok[/]: a worker can activate this project")

        emit({**to_jsonable(found), "warnings": warnings}, as_json=as_json, human=human)
        if found.problems:
            message, hint = found.problems[0]
            extra = [f"{other}" for other, _ in found.problems[1:]]
            raise RuntimeCheckError(message + (f" (also: {'; '.join(extra)})" if extra else ""), hint=hint)
