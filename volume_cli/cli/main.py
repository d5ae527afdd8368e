"""Entry point: builds the app, maps errors to one line plus the next command."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape

from volume_cli import __version__
from volume_cli.cli.commands import consumer, deps, models, projects, status, volume
from volume_cli.cli.render import stderr_console
from volume_cli.errors import Terminated, VolumeCliError, file_system_error
from volume_cli.redact import shown

DEBUG_ENV = "VOLUME_CLI_DEBUG"

app = typer.Typer(
    name="volume-cli",
    help="Python dependencies and AI models on a persistent network volume for GPU pods and serverless workers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(projects.app, name="projects")
app.add_typer(deps.app, name="deps")
app.add_typer(models.app, name="models")
status.register(app)
volume.register(app)
consumer.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"volume-cli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"
    logging.basicConfig(
        level=logging.DEBUG if _debug_enabled() else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"} or "--debug" in sys.argv[1:]


def report_error(error: VolumeCliError) -> None:
    stderr_console.print(f"[bold red]error:[/] {escape(shown(error.message))}", markup=True, highlight=False)
    problems = getattr(error, "problems", None)
    if problems and len(problems) > 1:
        for problem in problems:
            stderr_console.print(f"  - {shown(problem)}", markup=False, highlight=False)
    if error.hint:
        from volume_cli.cli.hints import with_user_options  # the hint runs as printed: same --root/--projects-dir

        hint = with_user_options(error.hint)
        stderr_console.print(f"[bold]next:[/] {escape(shown(hint))}", markup=True, highlight=False)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _exit_interrupted(interrupt: KeyboardInterrupt) -> None:
    code, cause = (143, "SIGTERM") if isinstance(interrupt, Terminated) else (130, "Ctrl-C")
    stderr_console.print(
        f"interrupted ({cause}): nothing half-done was committed; run the command again to resume",
        markup=False,
        highlight=False,
    )
    main = threading.main_thread()
    if any(thread is not main and thread.is_alive() and not thread.daemon for thread in threading.enumerate()):
        # A transfer thread stuck on a silent socket must not hold the exit for its whole timeout;
        # its partial file is as safe as after a kill -9.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _interrupt_behind(done: SystemExit) -> KeyboardInterrupt | None:
    """The Ctrl-C / SIGTERM that typer turned into a plain ``exit 130``, if that is what this is."""
    seen: BaseException | None = done
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits with the command's status."""
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C: locks are released and partial files kept for the resume.
        signal.signal(signal.SIGTERM, _raise_terminated)
    from volume_cli.cli.hints import remember

    remember(sys.argv[1:] if argv is None else argv)
    try:
        # Standalone mode: typer/click print usage errors (exit 2) and handle
        # --help and Exit themselves; our own errors propagate to here.
        app(args=argv, prog_name="volume-cli")
    except VolumeCliError as error:
        if _debug_enabled():
            raise
        report_error(error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt as interrupt:
        _exit_interrupted(interrupt)
    except SystemExit as done:
        behind = _interrupt_behind(done) if done.code == 130 else None
        if behind is None:
            raise
        _exit_interrupted(behind)
    except Exception as error:
        if _debug_enabled():
            raise
        mapped = file_system_error(error) if isinstance(error, OSError) else None
        if mapped is not None:
            # Permissions, a full or read-only volume: the user's to fix, so an error line, not "internal error".
            report_error(mapped)
            sys.exit(mapped.exit_code)
        stderr_console.print(
            f"[bold red]internal error:[/] {type(error).__name__}: {escape(shown(str(error)))}",
            markup=True,
            highlight=False,
        )
        stderr_console.print(f"[bold]next:[/] rerun with --debug (or {DEBUG_ENV}=1) for the traceback and report it")
        sys.exit(1)
