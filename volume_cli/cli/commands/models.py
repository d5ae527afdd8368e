"""``volume-cli models ...``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Download, verify and inspect a project's models.", no_args_is_help=True)
