"""``volume-cli models list|download|verify|ensure|rm|gc``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from volume_cli.cli.options import (
    DryRunOption,
    JsonOption,
    OptionalProjectOption,
    ProjectOption,
    ProjectsDirOption,
    RootOption,
    YesOption,
)
from volume_cli.cli.render import emit, format_bytes, plain_table

if TYPE_CHECKING:
    from volume_cli.layout import VolumeLayout
    from volume_cli.models import DownloadResult, GcResult, VerifyResult
    from volume_cli.project.definition import ProjectDefinition

app = typer.Typer(help="Download, verify and inspect a project's models.", no_args_is_help=True)

HfEndpointOption = Annotated[
    list[str] | None,
    typer.Option(
        "--hf-endpoint",
        metavar="URL",
        help="HuggingFace endpoint, repeatable, tried in order (e.g. https://hf-mirror.com then https://huggingface.co). "
        "Default: $HF_ENDPOINT, then huggingface.co.",
        show_default=False,
    ),
]
MsEndpointOption = Annotated[
    list[str] | None,
    typer.Option(
        "--modelscope-endpoint",
        metavar="URL",
        help="ModelScope endpoint, repeatable, tried in order. Default: $MODELSCOPE_ENDPOINT, then modelscope.cn.",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", metavar="SECONDS", help="Seconds a request may stay silent.", min=1)
]
RetriesOption = Annotated[
    int, typer.Option("--retries", metavar="N", help="Retries per request on errors, timeouts and 5xx.", min=0)
]
MinSpeedOption = Annotated[
    float,
    typer.Option(
        "--min-speed",
        metavar="KB/S",
        help="KB/s a transfer must average over each --timeout window, else it is cut and resumed "
        "(retry, then the next mirror); 0 turns the rule off.",
        min=0,
    ),
]
DeadlineOption = Annotated[
    float,
    typer.Option(
        "--deadline",
        metavar="SECONDS",
        envvar="VOLUME_CLI_MODELS_DEADLINE",
        help="Seconds the whole run may take; partial files are kept and resume next time (0: no limit).",
        min=0,
    ),
]


def render_download(console: Console, result: DownloadResult) -> None:
    table = plain_table()
    for column in ("model", "action", "revision", "size", "fetched", "endpoint"):
        table.add_column(column, justify="right" if column in {"size", "fetched"} else "left", overflow="fold")
    for model in result.models:
        colour = "red" if model.action == "failed" else ("green" if model.action == "present" else "cyan")
        table.add_row(
            model.key,
            f"[{colour}]{model.action}[/]",
            (model.resolved_commit or model.requested_revision or "-")[:12],
            format_bytes(model.size_bytes),
            format_bytes(model.bytes_downloaded) if model.bytes_downloaded else "-",
            model.endpoint or ("local disk" if not result.network_used else "-"),
        )
    console.print(table)
    for model in result.failed:
        console.print(f"[red]{model.key}:[/] {model.error}", markup=True)
    network = (
        "no network requests" if not result.network_used else f"{format_bytes(result.bytes_downloaded)} downloaded"
    )
    console.print(
        f"{len(result.models)} model(s), {network}, {result.seconds:.1f}s" + (" (dry run)" if result.dry_run else "")
    )


def _models_context(
    projects_dir: list[Path] | None, project: str, root: Path | None, *, write: bool
) -> tuple[ProjectDefinition, VolumeLayout]:
    from volume_cli.cli import context

    return context.project(projects_dir, project), context.layout(root, write=write)


@app.command("download")
def download_command(
    project: ProjectOption,
    root: RootOption = None,
    projects_dir: ProjectsDirOption = None,
    hf_endpoint: HfEndpointOption = None,
    modelscope_endpoint: MsEndpointOption = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Ask the hub whether unpinned revisions moved.")] = False,
    dry_run: DryRunOption = False,
    timeout: TimeoutOption = 30.0,
    retries: RetriesOption = 4,
    min_speed: MinSpeedOption = 10.0,
    deadline: DeadlineOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Download the project's models into the shared models/ folder; present ones cost no request."""
    from volume_cli.cli.progress_view import ProgressView
    from volume_cli.models import download

    definition, layout = _models_context(projects_dir, project, root, write=not dry_run)
    with ProgressView() as progress:
        result = download(
            layout=layout,
            project=definition,
            hf_endpoints=hf_endpoint,
            modelscope_endpoints=modelscope_endpoint,
            refresh=refresh,
            dry_run=dry_run,
            progress=progress,
            timeout=timeout,
            retries=retries,
            min_rate=min_speed * 1024,
            deadline=deadline or None,
        )
    emit(result, as_json=as_json, human=lambda console: render_download(console, result))


@app.command("ensure")
def ensure_command(
    project: ProjectOption,
    root: RootOption = None,
    projects_dir: ProjectsDirOption = None,
    hf_endpoint: HfEndpointOption = None,
    modelscope_endpoint: MsEndpointOption = None,
    timeout: TimeoutOption = 30.0,
    retries: RetriesOption = 4,
    min_speed: MinSpeedOption = 10.0,
    deadline: DeadlineOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Start-up mode: no-op when models are present, else download (DOWNLOAD_MODELS_ON_STARTUP=false skips).

    Exits 0 only when every model is complete."""
    from volume_cli.cli.progress_view import ProgressView
    from volume_cli.errors import ModelError
    from volume_cli.models import ensure

    definition, layout = _models_context(projects_dir, project, root, write=False)
    with ProgressView() as progress:
        result = ensure(
            layout=layout,
            project=definition,
            hf_endpoints=hf_endpoint,
            modelscope_endpoints=modelscope_endpoint,
            progress=progress,
            timeout=timeout,
            retries=retries,
            min_rate=min_speed * 1024,
            deadline=deadline or None,
        )

    def human(console: Console) -> None:
        state = "complete" if result.complete else f"incomplete (missing: {', '.join(result.missing)})"
        console.print(f"models of {result.project}: {state}" + (f" — {result.reason}" if result.reason else ""))

    emit(result, as_json=as_json, human=human)
    if not result.complete:
        raise ModelError(
            f"models of {result.project} are incomplete: {', '.join(result.missing)}",
            hint=f"volume-cli models download --project {result.project}",
        )


@app.command("list")
def list_command(
    project: OptionalProjectOption = None,
    root: RootOption = None,
    projects_dir: ProjectsDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Models desired by projects versus present on the volume, with revision and size."""
    from volume_cli.cli import context
    from volume_cli.models import list_models

    discovery = context.projects(projects_dir)
    definitions = [discovery.get(project)] if project else list(discovery.projects.values())
    layout = context.layout(root, write=False)
    rows = list_models(layout=layout, projects=definitions)

    def human(console: Console) -> None:
        table = plain_table()
        for column in ("model", "state", "wanted by", "revision", "size"):
            table.add_column(column, justify="right" if column == "size" else "left", overflow="fold")
        for row in rows:
            colour = "green" if row.state == "present" else ("yellow" if row.desired_by else "dim")
            table.add_row(
                row.key,
                f"[{colour}]{row.state}[/]",
                ", ".join(row.desired_by) or "(no project)",
                (row.resolved_commit or row.requested_revision or "-")[:12],
                format_bytes(row.size_bytes) if row.size_bytes else "-",
            )
        console.print(table)

    emit(rows, as_json=as_json, human=human)


@app.command("verify")
def verify_command(
    project: OptionalProjectOption = None,
    deep: Annotated[bool, typer.Option("--deep", help="Hash every file against its recorded checksum.")] = False,
    root: RootOption = None,
    projects_dir: ProjectsDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check presence and sizes (--deep: checksums); non-zero exit and the damaged files when not intact."""
    from volume_cli.cli import context
    from volume_cli.cli.progress_view import ProgressView
    from volume_cli.errors import ModelError
    from volume_cli.models import verify

    definition = context.project(projects_dir, project) if project else None
    layout = context.layout(root, write=False)
    with ProgressView() as progress:
        result = verify(layout=layout, project=definition, deep=deep, progress=progress)
    emit(result, as_json=as_json, human=lambda console: render_verify(console, result))
    if not result.ok:
        damaged = [model.key for model in result.models if not model.ok]
        raise ModelError(
            f"{len(damaged)} model(s) missing or damaged: {', '.join(damaged)}",
            hint=_repair_hint(layout, damaged, project, projects_dir),
        )


def _repair_hint(layout: VolumeLayout, damaged: list[str], project: str | None, projects_dir: list[Path] | None) -> str:
    """Name the projects whose download re-fetches the damaged models (a literal NAME helps nobody)."""
    if project:
        names = [project]
    else:
        from volume_cli.models.gc import projects_declaring

        wanting = projects_declaring(layout, damaged, declared=_declared_models(projects_dir))
        names = sorted({name for projects in wanting.values() for name in projects})
        if not names:
            return f"no project declares them: remove with volume-cli models rm {' '.join(damaged)}"
    commands = " and ".join(f"volume-cli models download --project {name}" for name in names)
    return f"{commands}  (re-fetches exactly the damaged files)"


def _declared_models(projects_dir: list[Path] | None) -> dict[str, list[str]]:
    from volume_cli.cli import context
    from volume_cli.errors import VolumeCliError
    from volume_cli.flows.gc import declared_model_keys

    try:
        return declared_model_keys(context.projects(projects_dir).projects)
    except VolumeCliError:
        return {}  # no project folders here: the volume's own records still tell


def render_verify(console: Console, result: VerifyResult) -> None:
    for model in result.models:
        mark = "[green]ok[/]     " if model.ok else f"[red]{model.state:<7}[/]"
        console.print(f"{mark} {model.key}  [dim]{model.checked_files} files, {format_bytes(model.checked_bytes)}[/]")
        for damaged in model.damaged:
            console.print(f"         {damaged.path}: {damaged.problem}", markup=False)
    console.print(
        f"{'deep (checksums)' if result.deep else 'quick (presence and sizes)'} check of {len(result.models)} model(s)"
    )


def _render_gc(console: Console, result: GcResult) -> None:
    verb = "would remove" if result.dry_run else "removed"
    for removed in result.removed:
        console.print(f"{verb} {removed.key}  {format_bytes(removed.bytes_freed)}  [dim]{removed.path}[/]")
    console.print(f"{verb} {len(result.removed)} model(s), {format_bytes(result.bytes_freed)}; kept {len(result.kept)}")


@app.command("rm")
def rm_command(
    keys: Annotated[
        list[str],
        typer.Argument(metavar="KEY", help="Model keys as shown by models list, e.g. huggingface/model/org/name."),
    ],
    root: RootOption = None,
    projects_dir: ProjectsDirOption = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Remove models from the volume by key (even ones a project still wants: it warns, then asks)."""
    from volume_cli.cli import context
    from volume_cli.models import remove

    layout = context.layout(root, write=True)
    plan = remove(layout=layout, keys=keys, dry_run=True)  # an unknown key stops here, before any question
    _warn_still_declared(layout, [removed.key for removed in plan.removed], projects_dir)
    if not dry_run:
        _confirm_plan(plan, yes=yes, as_json=as_json, command=f"volume-cli models rm {' '.join(keys)}")
    result = plan if dry_run else remove(layout=layout, keys=keys)
    emit(result, as_json=as_json, human=lambda console: _render_gc(console, result))


def _warn_still_declared(layout: VolumeLayout, keys: list[str], projects_dir: list[Path] | None) -> None:
    from volume_cli.models.gc import projects_declaring

    declared = _declared_models(projects_dir)
    stderr = Console(stderr=True)
    for key, projects in sorted(projects_declaring(layout, keys, declared=declared).items()):
        stderr.print(
            f"[yellow]warning:[/] {key} is still declared by {', '.join(projects)}: "
            f"its next models download/ensure fetches it again",
            highlight=False,
        )


def _confirm_plan(plan: GcResult, *, yes: bool, as_json: bool, command: str) -> None:
    from volume_cli.cli.confirm import confirm_removal

    if not plan.removed:
        return
    if not yes and not as_json:
        _render_gc(Console(stderr=True), plan)
    confirm_removal(
        f"{len(plan.removed)} model(s), {format_bytes(plan.bytes_freed)}", yes=yes, as_json=as_json, command=command
    )


@app.command("gc")
def gc_command(
    root: RootOption = None,
    projects_dir: ProjectsDirOption = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Remove models no project references (a model shared by projects counts once).

    Projects recorded on the volume but not found here still count as referencing their models."""
    from volume_cli.cli import context
    from volume_cli.flows.gc import collect_models

    projects = context.projects(projects_dir).projects
    layout = context.layout(root, write=True)
    plan = collect_models(layout=layout, projects=projects, dry_run=True)
    if not dry_run:
        _confirm_plan(plan, yes=yes, as_json=as_json, command="volume-cli models gc")
    result = plan if dry_run else collect_models(layout=layout, projects=projects, dry_run=False)
    emit(result, as_json=as_json, human=lambda console: _render_gc(console, result))
