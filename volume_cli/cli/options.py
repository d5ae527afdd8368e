"""Options shared by several commands, declared once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer


@dataclass
class OutputSettings:
    """How much this run prints; set by the global flags wherever they stand on the command line."""

    quiet: bool = False
    verbose: bool = False
    debug: bool = False
    json: bool = False


OUTPUT = OutputSettings()


def json_flag(value: bool) -> bool:
    # `volume-cli --json status` and `volume-cli status --json` mean the same.
    if value:
        OUTPUT.json = True
    return value or OUTPUT.json


RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        metavar="DIR",
        help="Volume root. Default: $VOLUME_CLI_ROOT, then /workspace, then /runpod-volume.",
        show_default=False,
    ),
]
ProjectsDirOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--projects-dir",
        metavar="DIR",
        help="Extra folder of projects (repeatable); also $VOLUME_CLI_PROJECTS_PATH.",
        show_default=False,
    ),
]
ProjectOption = Annotated[
    str, typer.Option("--project", "-p", metavar="NAME", help="Project name (see: volume-cli projects list).")
]
OptionalProjectOption = Annotated[
    str | None, typer.Option("--project", "-p", metavar="NAME", help="Only this project.", show_default=False)
]
JsonOption = Annotated[
    bool, typer.Option("--json", callback=json_flag, help="Print the result (or the error) as JSON on stdout.")
]


def _checked_index_url(value: str | None) -> str | None:
    # Checked here, not at the first install: a bad mirror would otherwise be blamed on a package.
    from volume_cli.config.dependencies import check_index_url, index_url_warning

    if value is None:
        return None
    try:
        value = check_index_url(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    warning = index_url_warning(value)
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    return value


IndexUrlOption = Annotated[
    str | None,
    typer.Option(
        "--index-url",
        metavar="URL",
        envvar="VOLUME_CLI_INDEX_URL",
        help="Mirror that replaces PyPI for groups without their own index_url "
        "(e.g. https://pypi.tuna.tsinghua.edu.cn/simple).",
        show_default=False,
        callback=_checked_index_url,
    ),
]
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        help="Seconds to wait for another run holding the project's lock (default: fail at once).",
        min=0,
    ),
]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]
IndexTimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Seconds a package index may stay silent before uv gives up on it (one retry).",
        min=1,
    ),
]
YesOption = Annotated[
    bool,
    typer.Option("-y", "--yes", help="Remove without asking (needed when stdin is not a terminal, or with --json)."),
]
