"""``volume-cli projects list|new|check``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from volume_cli.cli.options import JsonOption, ProjectsDirOption
from volume_cli.cli.render import emit, plain_table, short_path
from volume_cli.errors import ConfigError

if TYPE_CHECKING:
    from volume_cli.project.discovery import Discovery

app = typer.Typer(help="List, create and validate projects.", no_args_is_help=True)


@dataclass(frozen=True)
class ProjectRow:
    name: str
    python_version: str | None
    groups: int | None
    packages: int | None
    models: int | None
    folder: Path
    definition: str | None
    error: str | None
    note: str | None = None


def project_rows(discovery: Discovery) -> list[ProjectRow]:
    rows: list[ProjectRow] = []
    for definition in discovery.projects.values():
        try:
            config = definition.dependencies
            groups, packages, error = len(config.groups), config.package_count, None
        except ConfigError as exc:
            groups, packages, error = None, None, exc.message
        rows.append(
            ProjectRow(
                name=definition.name,
                python_version=definition.python_version,
                groups=groups,
                packages=packages,
                models=len(definition.models),
                folder=definition.folder,
                definition=definition.definition_file.name,
                error=error,
                note=discovery.note_for(definition.name),
            )
        )
    for broken in discovery.broken:
        rows.append(
            ProjectRow(
                name=broken.name or broken.folder.name.lower().replace("_", "-"),
                python_version=None,
                groups=None,
                packages=None,
                models=None,
                folder=broken.folder,
                definition=None,
                error=broken.error().message,
            )
        )
    return sorted(rows, key=lambda row: (row.name, str(row.folder)))


@app.command("list")
def list_command(projects_dir: ProjectsDirOption = None, as_json: JsonOption = False) -> None:
    """Every discovered project: python, groups, package and model counts, folder."""
    from volume_cli.project.discovery import discover

    discovery = discover(list(projects_dir or ()))  # broken folders are rows here, not warnings
    rows = project_rows(discovery)

    def human(console: Console) -> None:
        table = plain_table()
        for column in ("name", "python", "groups", "packages", "models", "folder"):
            table.add_column(
                column, justify="right" if column in {"groups", "packages", "models"} else "left", overflow="fold"
            )
        for row in rows:
            table.add_row(
                row.name,
                row.python_version or "-",
                "-" if row.groups is None else str(row.groups),
                "[red]invalid[/]" if row.packages is None else str(row.packages),
                "-" if row.models is None else str(row.models),
                short_path(row.folder),
            )
        console.print(table)
        if not rows:
            console.print("no projects found; create one with: volume-cli projects new NAME --python 3.10")
        for row in rows:
            if row.error:
                console.print(f"[red]{escape(row.name)}:[/] {escape(row.error)}", markup=True)
            if row.note:
                console.print(f"note: {row.note}", markup=False)
        console.print(f"[dim]searched: {', '.join(short_path(folder) for folder in discovery.folders)}[/]")

    emit(rows, as_json=as_json, human=human)
    if any(row.error for row in rows):
        raise typer.Exit(1)


@app.command("new")
def new_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Project name: lowercase letters, digits and hyphens.")],
    python: Annotated[
        str, typer.Option("--python", metavar="VERSION", help="Python version of the workers, e.g. 3.10.")
    ],
    projects_dir: Annotated[
        Path, typer.Option("--projects-dir", metavar="DIR", help="Folder to create the project in.", show_default=True)
    ] = Path("projects"),
    old_dir: Annotated[Path | None, typer.Option("--dir", hidden=True, help="Deprecated: use --projects-dir.")] = None,
) -> None:
    """Create projects/NAME/ with a plugin class and a commented dependencies.yaml."""
    from volume_cli.cli.render import stderr_console
    from volume_cli.project.scaffold import scaffold_project

    if old_dir is not None:
        stderr_console.print("note: --dir is deprecated; use --projects-dir", markup=False)
        projects_dir = old_dir
    directory = projects_dir

    result = scaffold_project(name=name, python_version=python, parent=directory)
    from volume_cli.cli.render import stdout_console as console  # soft-wrapped: a command is never split

    console.print(f"created project [bold]{result.name}[/] in {short_path(result.folder)}")
    for file in result.files:
        console.print(f"  {short_path(file)}")
    hint = "" if directory == Path("projects") else f" --projects-dir {directory}"
    console.print(f"next: edit {short_path(result.files[1])}, then run: volume-cli projects check{hint}")


@app.command("check")
def check_command(
    project: Annotated[str | None, typer.Option("--project", "-p", metavar="NAME", help="Only this project.")] = None,
    projects_dir: ProjectsDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate every project's configuration; non-zero exit on any problem."""
    from volume_cli.project.checking import check_projects

    report = check_projects(list(projects_dir or ()), only=project)

    def human(console: Console) -> None:
        for check in report.projects:
            if check.ok:
                console.print(f"[green]ok[/]     {check.name}  [dim]{short_path(check.folder)}[/]")
            else:
                console.print(f"[red]error[/]  {check.name}  [dim]{short_path(check.folder)}[/]")
                for problem in check.problems:
                    console.print(f"         {problem}", markup=False)
        for note in report.notes:
            console.print(f"note: {note}", markup=False)

    emit(report, as_json=as_json, human=human)
    failure = report.first_failure
    if failure is not None:
        hint = failure.hint or f"fix {failure.name}'s config, then run: volume-cli projects check"
        raise ConfigError(failure.problems, hint=hint)


@app.command("import")
def import_command(
    folder: Annotated[
        Path,
        typer.Argument(metavar="FOLDER", help="A project folder of the original tool: config.py + dependencies.yaml."),
    ],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing project.yaml.")] = False,
) -> None:
    """Write project.yaml for a folder of the original runpod-model-manager layout (config.py is read, never run)."""
    from volume_cli.project.legacy_import import import_legacy_folder

    result = import_legacy_folder(folder, force=force)
    console = Console()
    console.print(
        f"wrote {short_path(result.project_yaml)}: project {result.name}, python {result.python_version}, "
        f"{result.models} model(s)",
        markup=False,
    )
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"next: volume-cli projects check --projects-dir {folder.parent}", markup=False)
