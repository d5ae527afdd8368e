"""``volume-cli completion SHELL``: print the shell's completion script."""

from __future__ import annotations

from typing import Annotated

import typer

SHELLS = ("bash", "zsh", "fish")


def register(app: typer.Typer) -> None:
    @app.command("completion")
    def completion_command(
        shell: Annotated[str, typer.Argument(metavar="SHELL", help="bash, zsh or fish.", show_default=False)],
    ) -> None:
        """Print the completion script for a shell (source it, or save it where the shell looks)."""
        from typer._completion_classes import completion_init
        from typer._completion_shared import get_completion_script

        from volume_cli.errors import UsageError

        if shell not in SHELLS:
            raise UsageError(f"unknown shell {shell!r}: choose bash, zsh or fish", hint="volume-cli completion bash")
        # typer's own completion classes answer the script's requests (the `complete_bash` style).
        completion_init()
        script = get_completion_script(prog_name="volume-cli", complete_var="_VOLUME_CLI_COMPLETE", shell=shell)
        typer.echo(script)
