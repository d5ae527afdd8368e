"""``volume-cli deps list|lock|install|rollback|check``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from volume_cli.cli.commands.gc import register_gc
from volume_cli.cli.hints import with_user_options
from volume_cli.cli.options import (
    DryRunOption,
    IndexTimeoutOption,
    IndexUrlOption,
    JsonOption,
    ProjectOption,
    ProjectsDirOption,
    RootOption,
    WaitOption,
)
from volume_cli.cli.render import emit, format_bytes, plain_table

if TYPE_CHECKING:
    from volume_cli.deps import DepsCheckReport, InstallPlan, InstallResult

app = typer.Typer(help="Install, inspect and roll back a project's Python dependencies.", no_args_is_help=True)

ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Verify every store entry against its RECORD hashes, repair only damaged files, relink the generation.",
    ),
]
UpgradeOption = Annotated[
    bool, typer.Option("--upgrade", help="Re-resolve unpinned requirements to the newest allowed versions.")
]


@app.command("list")
def list_command(
    project: ProjectOption,
    root: RootOption = None,
    projects_dir: ProjectsDirOption = None,
    index_url: IndexUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """The project's groups (index, flags, packages in install order) and desired versus installed versions."""
    from volume_cli.cli import context
    from volume_cli.errors import RootError
    from volume_cli.flows.deps import list_deps
    from volume_cli.layout import VolumeLayout

    definition = context.project(projects_dir, project)
    _ = definition.dependencies  # a config error stops here, before the volume is looked for
    layout: VolumeLayout | None = None
    try:
        layout = context.layout(root, write=False)
    except RootError:
        pass  # no volume here: show the config alone
    listing = list_deps(layout=layout, project=definition, mirror=index_url)
    packages = listing.packages

    def human(console: Console) -> None:
        console.print(
            f"[bold]{definition.name}[/]  python {definition.python_version}  [dim]{definition.dependencies_path}[/]"
        )
        for entry in listing.groups:
            flags = " no_deps" if entry.no_deps else ""
            console.print(f"\n[bold]{entry.group}[/]  {entry.index_url} [dim]({entry.index_source}){flags}[/]")
            if entry.description:
                console.print(f"  [dim]{entry.description}[/]")
            for package in entry.packages:
                console.print(f"  {package}", markup=False)
        if packages:
            table = plain_table()
            for column in ("package", "group", "locked", "installed", "status"):
                table.add_column(column)
            for row in packages:
                colour = "green" if row.status == "ok" else "yellow"
                table.add_row(
                    row.name,
                    row.group or "(dependency)",
                    row.locked_version or "-",
                    row.installed_version or "-",
                    f"[{colour}]{row.status}[/]",
                )
            console.print()
            console.print(table)

    emit(listing, as_json=as_json, human=human)


@app.command("lock")
def lock_command(
    project: ProjectOption,
    root: RootOption = None,
    projects_dir: ProjectsDirOption = None,
    index_url: IndexUrlOption = None,
    upgrade: UpgradeOption = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="PATH", help="Also write the pylock.toml here.")
    ] = None,
    wait: WaitOption = 0,
    timeout: IndexTimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Resolve every group together for the project's Python into a PEP 751 pylock.toml."""
    from volume_cli.cli import context
    from volume_cli.cli.progress_view import ProgressView
    from volume_cli.deps import lock_project
    from volume_cli.deps.uvtool import uv_network

    definition = context.project(projects_dir, project)
    layout = context.layout(root, write=True)
    with uv_network(timeout=timeout), ProgressView() as progress:
        result = lock_project(
            layout=layout,
            project=definition,
            mirror=index_url,
            upgrade=upgrade,
            output=output,
            progress=progress,
            wait_seconds=wait,
        )

    def human(console: Console) -> None:
        state = "changed" if result.changed else "unchanged"
        console.print(f"locked {len(result.packages)} distributions for Python {result.python_version} ({state})")
        console.print(f"  {result.path}")
        if result.output:
            console.print(f"  exported to {result.output}")

    emit(result, as_json=as_json, human=human)


def render_plan(console: Console, plan: InstallPlan) -> None:
    rows = [
        ("add", "green", plan.add),
        ("upgrade", "cyan", plan.upgrade),
        ("downgrade", "yellow", plan.downgrade),
        ("reinstall", "cyan", plan.reinstall),
        ("remove", "red", plan.remove),
    ]
    for label, colour, changes in rows:
        for change in changes:
            versions = " → ".join(version for version in (change.installed_version, change.locked_version) if version)
            console.print(f"  [{colour}]{label:<9}[/] {change.name} {versions}")
    console.print(f"  {len(plan.unchanged)} unchanged" + ("" if plan.has_changes else " — nothing to do"))
    if not plan.bytecode and plan.to_install:
        from volume_cli.deps.plan import missing_interpreter_warning

        message, next_step = missing_interpreter_warning(plan.python_version)
        console.print(f"[bold yellow]warning:[/] {escape(message)}")
        console.print(f"next: {escape(next_step)}")


def render_install(console: Console, result: InstallResult) -> None:
    if result.noop:
        console.print(
            f"{result.project}: up to date (generation {result.generation}, {result.package_count} packages, "
            f"{result.seconds:.2f}s)"
        )
        return
    title = "plan" if result.dry_run else "installed"
    console.print(f"[bold]{result.project}[/] (python {result.python_version}) {title}:")
    render_plan(console, result.plan)
    if not result.dry_run:
        console.print(
            f"generation {result.generation} is current ({result.package_count} packages; "
            f"{result.installed_count} installed, {result.reused_count} reused from the store, "
            + (f"{result.repaired_count} repaired in place, " if result.repaired_count else "")
            + f"{format_bytes(result.bytes_added)} added, {result.link_count} links) in {result.seconds:.1f}s"
        )
        console.print(f"PYTHONPATH={result.deps_path.parent / '.boot' / result.deps_path.name}")  # pins a generation
        if result.previous_generation:
            undo = with_user_options(f"volume-cli deps rollback --project {result.project}")
            console.print(f"[dim]undo with: {escape(undo)}[/]")


@app.command("install")
def install_command(
    project: ProjectOption,
    root: RootOption = None,
    projects_dir: ProjectsDirOption = None,
    index_url: IndexUrlOption = None,
    force: ForceOption = False,
    upgrade: UpgradeOption = False,
    dry_run: DryRunOption = False,
    wait: WaitOption = 0,
    timeout: IndexTimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Install what changed into a new generation and switch to it atomically (--dry-run: print the plan)."""
    from volume_cli.cli import context
    from volume_cli.cli.progress_view import ProgressView
    from volume_cli.deps.uvtool import uv_network
    from volume_cli.flows.deps import install_deps

    definition = context.project(projects_dir, project)
    layout = context.layout(root, write=True)
    with uv_network(timeout=timeout), ProgressView() as progress:
        result = install_deps(
            layout=layout,
            project=definition,
            mirror=index_url,
            force=force,
            upgrade=upgrade,
            dry_run=dry_run,
            progress=progress,
            wait_seconds=wait,
        )
    emit(result, as_json=as_json, human=lambda console: render_install(console, result))


@app.command("rollback")
def rollback_command(
    project: ProjectOption,
    root: RootOption = None,
    projects_dir: ProjectsDirOption = None,
    dry_run: DryRunOption = False,
    wait: WaitOption = 0,
    as_json: JsonOption = False,
) -> None:
    """Make the previous generation current again (one atomic rename)."""
    from volume_cli.cli import context
    from volume_cli.cli.progress_view import ProgressView
    from volume_cli.deps import rollback

    definition = context.project(projects_dir, project)
    layout = context.layout(root, write=True)
    with ProgressView() as progress:
        result = rollback(layout=layout, project=definition, progress=progress, wait_seconds=wait, dry_run=dry_run)

    def human(console: Console) -> None:
        verb = "would switch" if result.dry_run else "switched"
        console.print(f"{result.project}: {verb} from {result.from_generation} to {result.to_generation}")

    emit(result, as_json=as_json, human=human)


def render_check(console: Console, report: DepsCheckReport) -> None:
    console.print(
        f"{report.project}: generation {report.generation or '-'}: {report.distributions_checked} distributions, "
        f"{report.files_checked} files, {report.modules_imported} modules imported"
        + (f" with {report.interpreter}" if report.interpreter else "")
    )
    for line in report.problems:
        console.print(f"  [red]{line}[/]")
    for name in report.missing:
        console.print(f"  [red]missing[/]   {name}")
    for name in report.extra:
        console.print(f"  [yellow]extra[/]     {name}")
    for mismatch in report.wrong_versions:
        console.print(f"  [red]version[/]   {mismatch.name}: locked {mismatch.locked}, installed {mismatch.installed}")
    for name in report.wrong_builds:
        console.print(f"  [red]build[/]     {name}")
    for problem in report.file_problems:
        console.print(f"  [red]{problem.problem:<9}[/] {problem.distribution}: {problem.path}")
    for failure in report.import_failures:
        console.print(f"  [red]import[/]    {failure.distribution}: {failure.module}: {failure.error}")
    for failure in report.import_warnings:
        console.print(f"  [yellow]optional[/]  {failure.distribution}: {failure.module}: {failure.error}")
    for unmet in report.unmet_requirements:
        have = f"{unmet.installed} installed" if unmet.installed else "not installed"
        console.print(f"  [yellow]unmet[/]     {unmet.distribution} (no_deps) requires {unmet.requirement}: {have}")
    for note in report.notes:
        console.print(f"  [dim]{note}[/]")
    if report.ok:
        console.print("[green]ok[/]")


@app.command("check")
def check_command(
    project: ProjectOption,
    root: RootOption = None,
    projects_dir: ProjectsDirOption = None,
    imports: Annotated[
        bool, typer.Option("--imports/--no-imports", help="Import each distribution's top-level modules.")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Compare the current generation with the lock and RECORD hashes; import each distribution's modules."""
    from volume_cli.cli import context
    from volume_cli.cli.progress_view import ProgressView
    from volume_cli.deps import check
    from volume_cli.deps.check import next_step
    from volume_cli.errors import InstallError

    definition = context.project(projects_dir, project)
    layout = context.layout(root, write=False)
    with ProgressView() as progress:
        report = check(layout=layout, project=definition, imports=imports, progress=progress)
    emit(report, as_json=as_json, human=lambda console: render_check(console, report))
    if not report.ok:
        raise InstallError(
            f"dependencies of {definition.name} do not match the lock",
            hint=next_step(report),
        )


register_gc(app)
