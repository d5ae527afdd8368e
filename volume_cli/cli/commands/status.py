"""``volume-cli status``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from volume_cli.cli.options import IndexUrlOption, JsonOption, OptionalProjectOption, ProjectsDirOption, RootOption
from volume_cli.cli.render import emit, format_bytes, plain_table

if TYPE_CHECKING:
    from rich.table import Table

    from volume_cli.flows.status import ProjectStatus, StatusReport
    from volume_cli.uv_cache import UvCacheUsage


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status_command(
        project: OptionalProjectOption = None,
        root: RootOption = None,
        projects_dir: ProjectsDirOption = None,
        index_url: IndexUrlOption = None,
        as_json: JsonOption = False,
        uv_cache: Annotated[
            bool,
            typer.Option("--uv-cache", help="Also measure uv's package cache on this pod's disk (a walk: seconds)."),
        ] = False,
    ) -> None:
        """What is installed on the volume, what drifted, sizes and free space."""
        from volume_cli.cli import context
        from volume_cli.flows.status import volume_status

        resolved = context.read_root(root)
        discovery = context.projects(projects_dir)
        if project:
            discovery.get(project)
        report = volume_status(resolved, discovery.projects, only=project, mirror=index_url, measure_uv_cache=uv_cache)
        emit(report, as_json=as_json, human=lambda console: render_status(console, report))


_COLUMNS = ("project", "py", "deps", "generation", "installed", "pkgs", "models", "size")
# Dropped first when the terminal is narrow: the project, its state and its generation are what users
# read and copy into the next command, so they are never cut to "…".
_DROP_ORDER = ("installed", "py", "pkgs", "size", "models")
_GAP = 3  # SIMPLE_HEAD with padding: two spaces and a separator between columns


def _row(item: ProjectStatus) -> dict[str, tuple[str, str]]:
    """Each cell as (plain text, rich style): widths are measured on the plain text."""
    state_colour = {"installed": "green", "not installed": "yellow", "config changed": "yellow"}.get(item.state, "red")
    models_colour = {"present": "green", "missing": "red"}.get(item.models_state, "dim")
    size = (
        format_bytes(item.deps_size_bytes + item.models_size_bytes)
        if item.deps_installed or item.models_downloaded_at
        else "-"
    )
    return {
        "project": (item.name, ""),
        "py": (item.python_version or "-", ""),
        "deps": (item.state, state_colour),
        "generation": (item.generation or "-", ""),
        "installed": (item.installed_at.strftime("%Y-%m-%d") if item.installed_at else "-", ""),
        "pkgs": (str(item.package_count) if item.deps_installed else "-", ""),
        "models": (f"{item.models_declared - len(item.models_missing)}/{item.models_declared}", models_colour),
        "size": (size, ""),
    }


def _fitting_columns(rows: list[dict[str, tuple[str, str]]], width: int) -> list[str]:
    widths = {column: max([len(column)] + [len(row[column][0]) for row in rows]) for column in _COLUMNS}
    shown = list(_COLUMNS)
    for column in _DROP_ORDER:
        if sum(widths[name] for name in shown) + _GAP * (len(shown) - 1) <= width:
            break
        shown.remove(column)
    return shown


def _table(rows: list[dict[str, tuple[str, str]]], *, width: int) -> Table:
    table = plain_table()
    for column in _fitting_columns(rows, width):
        # Still too wide (a very long name): fold onto the next line rather than cut to "…".
        table.add_column(column, justify="right" if column in {"size", "pkgs"} else "left", overflow="fold")
    for row in rows:
        cells = [row[column.header] for column in table.columns if isinstance(column.header, str)]
        table.add_row(*(Text(text, style=style) for text, style in cells))
    return table


def render_status(console: Console, report: StatusReport) -> None:
    disk = report.disk
    console.print(f"[bold]root[/]   {report.root}  [dim](from {report.root_source})[/]")
    console.print(f"[bold]mount[/]  {report.mount.describe()}")
    colour = "red" if disk.warning else "green"
    console.print(
        f"[bold]disk[/]   {format_bytes(disk.used_bytes)} used of {format_bytes(disk.total_bytes)} "
        f"([{colour}]{disk.percent_used:.0f}%[/]), {format_bytes(disk.free_bytes)} free"
    )
    if not report.initialised:
        console.print("[dim]no volume-cli metadata here yet: run volume-cli setup --project NAME[/]")
    rows = [_row(item) for item in report.projects]
    console.print(_table(rows, width=console.width))
    console.print(
        "[dim]deps: the dependencies only; models: present/declared; size: dependencies + models, recorded at install[/]"
    )
    if report.store is not None:
        store = report.store
        console.print(
            f"[bold]store[/]  {store.entries} distributions, {format_bytes(store.size_bytes)}; "
            f"{store.shared_entries} shared by several projects ({format_bytes(store.saved_bytes)} saved)"
            + (f"; {store.unreferenced_entries} unused (volume-cli gc)" if store.unreferenced_entries else "")
            + (f"; packs {format_bytes(store.packs_bytes)} ({store.packs} entries)" if store.packs else "")
        )
    for item in report.projects:
        if item.deps is not None and item.deps.installed:
            deps = item.deps
            drift = []
            if deps.config_changed_since_lock:
                drift.append("config changed since lock")
            if deps.generation_differs_from_lock:
                drift.append("generation differs from lock")
            console.print(
                f"[bold]{item.name}[/]: lock {(deps.lock_hash or '-').removeprefix('sha256:')[:12]}, {deps.locked_packages or 0} locked / "
                f"{deps.installed_packages or 0} installed, {len(deps.generations_kept)} generation(s) kept"
                + (f"; [yellow]{', '.join(drift)}[/]" if drift else "")
            )
        if item.models_missing and item.deps_installed:
            console.print(f"[yellow]{item.name}:[/] models missing: {', '.join(item.models_missing)}")
    for item in report.projects:
        for problem in item.problems:
            console.print(f"[red]{item.name}:[/] {problem}")
    if report.uv_cache is not None:
        render_uv_cache(console, report.uv_cache)
    for warning in report.warnings:
        console.print(f"[bold yellow]warning:[/] {warning}")


def render_uv_cache(console: Console, usage: UvCacheUsage) -> None:
    # This pod's disk, not the volume: a torch stack leaves ~6 GB here after its first install.
    if usage.size_bytes is None:
        size = "size: volume-cli status --uv-cache" if usage.exists else "empty"
    else:
        size = f"{format_bytes(usage.size_bytes)} on this pod's disk (free it: volume-cli gc --uv-cache)"
    console.print(f"[bold]uv cache[/] {escape(str(usage.path))}  [dim]{size}[/]", highlight=False)
