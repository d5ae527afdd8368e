"""``next:`` and ``undo with:`` lines that run as printed.

A hint names a command; if the user passed ``--root`` or ``--projects-dir``,
the command printed without them would look at ``/workspace`` and the bundled
projects instead. So the options the user gave are added to every
``volume-cli ...`` command in a hint, where that command accepts them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import Any

CARRIED_OPTIONS = ("--root", "--projects-dir")
_COMMAND = re.compile(r"volume-cli((?: [a-z][a-z-]*)+)")

_COMMAND_END = re.compile(r"volume-cli|  |\(|;|, ")

_given: tuple[tuple[str, str], ...] = ()


def given_options(argv: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The ``--root``/``--projects-dir`` pairs on a command line, in order."""
    found: list[tuple[str, str]] = []
    args = list(argv)
    for index, arg in enumerate(args):
        if arg == "--":
            break
        for option in CARRIED_OPTIONS:
            if arg == option and index + 1 < len(args):
                found.append((option, args[index + 1]))
            elif arg.startswith(option + "="):
                found.append((option, arg.split("=", 1)[1]))
    return tuple(found)


def remember(argv: Sequence[str]) -> None:
    """Called once by the entry point with the user's arguments."""
    global _given
    _given = given_options(argv)


def _accepted(path: list[str]) -> tuple[int, set[str]]:
    """How many words of ``path`` name a command, and the options that command takes."""
    from volume_cli.cli.main import build_cli, command_word

    # Duck-typed: typer may ship its own click, whose groups are not ``click.Group``.
    command: Any = build_cli(command_word(path))
    used = 0
    for word in path:
        subcommands = getattr(command, "commands", None)
        if not isinstance(subcommands, dict) or word not in subcommands:
            break
        command = subcommands[word]
        used += 1
    if used == 0 or isinstance(getattr(command, "commands", None), dict):
        return 0, set()
    return used, {opt for param in command.params for opt in param.opts}


def with_user_options(text: str, given: Sequence[tuple[str, str]] | None = None) -> str:
    """``text`` with the user's ``--root``/``--projects-dir`` added to each ``volume-cli`` command in it."""
    pairs = _given if given is None else tuple(given)
    if not pairs or "volume-cli" not in text:
        return text
    pieces: list[str] = []
    last = 0
    for match in _COMMAND.finditer(text):
        words = match.group(1).split()
        used, options = _accepted(words)
        if not used:
            continue
        end_of_path = match.start(1) + len(" " + " ".join(words[:used]))
        # The command's own words end at prose: "(or add --projects-dir DIR)" is not one of its options.
        own = _COMMAND_END.split(text[end_of_path:], 1)[0].rstrip().removesuffix(".")
        extra = [f"{option} {shlex.quote(value)}" for option, value in pairs if option in options and option not in own]
        if extra:
            # Appended after the command's own options, so the line still starts as the bare hint did.
            insert_at = end_of_path + len(own)
            pieces.append(text[last:insert_at] + " " + " ".join(extra))
            last = insert_at
    pieces.append(text[last:])
    return "".join(pieces)
