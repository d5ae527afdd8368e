"""Generate docs/cli.md from the app itself; a test fails when it drifts.

python -m volume_cli.cli.reference docs/cli.md
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HEADER = """# CLI reference

Generated from the app by `python -m volume_cli.cli.reference docs/cli.md`; do not edit by hand
(a test fails when this file and the app disagree).

## Conventions

- **Global flags** go before or after the subcommand (`volume-cli -q status` = `volume-cli status -q`):
  `-q/--quiet` prints only errors and the result (no progress, notes or warnings); `-v/--verbose` also
  prints each command run (uv's command line, credentials masked); `--debug` prints the `error:`/`next:`
  lines, then the traceback, plus debug logs (also `VOLUME_CLI_DEBUG=1`). `--json` before the
  subcommand is the same as the command's own `--json`.
- **JSON errors**: with `--json`, a failure also prints one object on stdout,
  `{"error": ..., "next": ..., "exit_code": N}` (see [exit codes](exit-codes.md)).
- **Shell completion**: `volume-cli completion bash|zsh|fish` prints the script. Load it once with
  `eval "$(volume-cli completion bash)"` in `~/.bashrc`, or save it:
  `volume-cli completion bash > ~/.local/share/bash-completion/completions/volume-cli`,
  `volume-cli completion zsh > ~/.zfunc/_volume-cli` (with `fpath+=~/.zfunc; autoload -Uz compinit; compinit`),
  `volume-cli completion fish > ~/.config/fish/completions/volume-cli.fish`.
- `projects new --dir` is a hidden, deprecated alias of `--projects-dir`.
- Colours follow `NO_COLOR` and `TERM=dumb` (see the progress renderer).
"""


def _walk(command: Any, path: list[str], parent: Any = None) -> list[tuple[list[str], Any, Any]]:
    # A fixed width keeps the file identical whatever terminal regenerates it; the parent context
    # passes down -h, as at run time.
    context = command.make_context(
        path[-1], [], parent=parent, resilient_parsing=True, terminal_width=100, max_content_width=100
    )
    found = [(path, command, context)]
    for name in sorted(getattr(command, "commands", {}) or {}):
        found += _walk(command.commands[name], [*path, name], context)
    return found


def render_reference() -> str:
    from volume_cli.cli.main import build_cli

    sections = [HEADER]
    # A fresh tree: click keeps each command's help option from the first context that asked for it,
    # and the process's cached tree may have been parsed without the parent that adds -h.
    for path, command, context in _walk(build_cli.__wrapped__(), ["volume-cli"]):
        help_text = command.get_help(context)
        sections.append(f"## `{' '.join(path)}`\n\n```text\n{help_text.rstrip()}\n```\n")
    return "\n".join(sections)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/cli.md")
    target.write_text(render_reference())
    print(target)
