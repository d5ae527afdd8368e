"""Asking before a destructive command removes anything, the way ``hf cache rm`` does.

On a terminal the user is asked; anywhere else (a script, a pipe, ``--json``)
nothing is removed unless ``--yes`` says so: a script that never had to
answer must not start deleting because stdin happened to be closed.
"""

from __future__ import annotations

import sys

import typer

from volume_cli.errors import ConfirmationError


def confirm_removal(what: str, *, yes: bool, as_json: bool, command: str) -> None:
    """Return when removing ``what`` is confirmed; raise ConfirmationError otherwise."""
    if yes:
        return
    hint = f"{command} --yes  (or --dry-run to see the list first)"
    if as_json or not sys.stdin.isatty():
        raise ConfirmationError(f"not removing {what} without confirmation: no terminal to ask on", hint=hint)
    if not typer.confirm(f"Remove {what}?", default=False, err=True):
        raise ConfirmationError(f"not confirmed: nothing removed ({what} kept)", hint=hint)
