"""``volume-cli deps ...``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from volume_cli.cli.options import IndexUrlOption, JsonOption, ProjectOption, ProjectsDirOption

app = typer.Typer(help="Install, inspect and roll back a project's Python dependencies.", no_args_is_help=True)


@app.command("list")
def list_command(
    project: ProjectOption,
    projects_dir: ProjectsDirOption = None,
    index_url: IndexUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """The project's dependency groups: index, flags and packages, in install order."""
    from volume_cli.cli import context

    definition = context.project(projects_dir, project)
    config = definition.dependencies
    groups = [
        {
            "group": name,
            "index_url": group.effective_index_url(index_url),
            "index_source": "group" if group.index_url else ("mirror" if index_url else "PyPI"),
            "extra_index_urls": group.extra_index_urls,
            "no_deps": group.no_deps,
            "description": group.description,
            "packages": group.packages,
        }
        for name, group in config.ordered_groups
    ]

    group_packages = {name: group.packages for name, group in config.ordered_groups}

    def human(console: Console) -> None:
        console.print(
            f"[bold]{definition.name}[/]  python {definition.python_version}  [dim]{definition.dependencies_path}[/]"
        )
        for entry in groups:
            flags = " no_deps" if entry["no_deps"] else ""
            console.print(f"\n[bold]{entry['group']}[/]  {entry['index_url']} [dim]({entry['index_source']}){flags}[/]")
            if entry["description"]:
                console.print(f"  [dim]{entry['description']}[/]")
            table = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
            table.add_column("package")
            for package in group_packages[str(entry["group"])]:
                table.add_row(f"  {package}")
            console.print(table)

    from volume_cli.cli.render import emit

    emit(
        {"project": definition.name, "python_version": definition.python_version, "groups": groups},
        as_json=as_json,
        human=human,
    )
