"""Entry point: builds the app, maps errors to one line plus the next command."""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
import typer.main
from rich.markup import escape

from volume_cli import __version__
from volume_cli.cli.examples import epilog
from volume_cli.cli.options import OUTPUT, OutputSettings, json_flag
from volume_cli.cli.render import stderr_console
from volume_cli.errors import Terminated, VolumeCliError, file_system_error
from volume_cli.redact import redact_text, shown

DEBUG_ENV = "VOLUME_CLI_DEBUG"

# Each top-level word and the module that defines it, in the order of the help: a group (the module's
# ``app``) or commands added by the module's ``register``. A run imports and builds only its own
# command's branch: building every command cost each run ~40 ms.
GROUPS = {
    "projects": "volume_cli.cli.commands.projects",
    "deps": "volume_cli.cli.commands.deps",
    "models": "volume_cli.cli.commands.models",
    "remote": "volume_cli.cli.commands.remote",
    "sync": "volume_cli.cli.commands.sync",
}
COMMANDS = {
    "status": "volume_cli.cli.commands.status",
    "setup": "volume_cli.cli.commands.volume",
    "gc": "volume_cli.cli.commands.volume",
    "env": "volume_cli.cli.commands.consumer",
    "doctor": "volume_cli.cli.commands.consumer",
    "completion": "volume_cli.cli.commands.completion",
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"volume-cli {__version__}")
        raise typer.Exit()


def _quiet(value: bool) -> None:
    if value:
        OUTPUT.quiet = True
        _settings_parsed()


def _verbose(value: bool) -> None:
    if value:
        OUTPUT.verbose = True
        _settings_parsed()


def _debug(value: bool) -> None:
    if value:
        OUTPUT.debug = True
        _settings_parsed()


QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", callback=_quiet, help="Print only errors and the result.", expose_value=False)
]
VerboseOption = Annotated[
    bool,
    typer.Option("--verbose", "-v", callback=_verbose, help="Also print each command run (uv...).", expose_value=False),
]
DebugOption = Annotated[
    bool,
    typer.Option("--debug", callback=_debug, help="Show tracebacks and debug logs.", expose_value=False),
]


def main(
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
    as_json: Annotated[
        bool, typer.Option("--json", callback=json_flag, help="Print results and errors as JSON on stdout.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    pass


def _global_params() -> list[Any]:
    """-q, -v and --debug for every command, so they work after the subcommand too."""
    probe = typer.Typer(add_completion=False)

    @probe.command()
    def _probe(quiet: QuietOption = False, verbose: VerboseOption = False, debug: DebugOption = False) -> None:
        pass

    return list(typer.main.get_command(probe).params)


def make_app(words: Collection[str] = ()) -> typer.Typer:
    """The typer app with the top-level commands and groups named in ``words``; with none, all of them."""
    from importlib import import_module

    wanted = set(words) & (GROUPS.keys() | COMMANDS.keys()) or GROUPS.keys() | COMMANDS.keys()
    made = typer.Typer(
        name="volume-cli",
        help="Python dependencies and AI models on a persistent network volume for GPU pods and serverless workers.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    made.callback()(main)
    for name, module in GROUPS.items():
        if name in wanted:
            made.add_typer(import_module(module).app, name=name)
    for module in dict.fromkeys(module for name, module in COMMANDS.items() if name in wanted):
        import_module(module).register(made)
    return made


def command_word(words: Sequence[str]) -> str | None:
    """The top-level command ``words`` run (the first word that is not an option), if it is one of ours."""
    for word in words:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in GROUPS or word in COMMANDS else None
    return None


@functools.cache
def build_cli(word: str | None = None) -> Any:
    """The click command the entry point runs: the app plus global flags and examples on every command.

    With ``word`` (a top-level command) only its branch is built; help at the top, completion, a
    misspelt command and the CLI reference build all. Built once per process: a hint that names a
    command reads its options from the same tree.
    """
    command = typer.main.get_command(make_app([word] if word else []))
    command.epilog = epilog("")
    global_params = _global_params()  # built once (each build converts a probe app), copied per command

    def walk(node: Any, path: list[str]) -> None:
        for name, sub in (getattr(node, "commands", None) or {}).items():
            sub.epilog = epilog(" ".join([*path, name]))
            if getattr(sub, "commands", None):
                walk(sub, [*path, name])
            else:
                sub.params.extend(copy.copy(param) for param in global_params)
                _metavar_only(sub)

    walk(command, [])
    return command


def _metavar_only(command: Any) -> None:
    """typer prints an argument as `{NAME}` / `NAME <str>` even with a metavar: the metavar says it all."""
    for param in command.params:
        if param.param_type_name == "argument" and param.metavar:
            usage = param.metavar + ("..." if param.nargs != 1 else "")
            param.display_type_rich = lambda ctx: None
            param.get_usage_pieces = lambda ctx, usage=usage: [usage]


def _debug_enabled(argv: Sequence[str] = ()) -> bool:
    options = list(argv)[: list(argv).index("--")] if "--" in argv else list(argv)
    return (
        OUTPUT.debug
        or os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
        or "--debug" in options
    )


def _json_requested(argv: Sequence[str]) -> bool:
    # A usage error stops parsing before the flag's callback ran: fall back to the raw words.
    options = list(argv)[: list(argv).index("--")] if "--" in argv else list(argv)
    return OUTPUT.json or "--json" in options


def report_error(error: VolumeCliError) -> None:
    stderr_console.print(f"[bold red]error:[/] {escape(shown(error.message))}", markup=True, highlight=False)
    problems = getattr(error, "problems", None)
    if problems and len(problems) > 1:
        for problem in problems:
            stderr_console.print(f"  - {shown(problem)}", markup=False, highlight=False)
    from volume_cli.cli.hints import with_user_options  # the hint runs as printed: same --root/--projects-dir

    hint = with_user_options(error.hint) if error.hint else None
    if hint:
        stderr_console.print(f"[bold]next:[/] {escape(shown(hint))}", markup=True, highlight=False)
    if OUTPUT.json:
        _json_error(error.message, hint, error.exit_code)


def _json_error(message: str, hint: str | None, exit_code: int) -> None:
    """The error as one JSON object on stdout, unless the command already put its result there."""
    from volume_cli.cli import render

    document = json.dumps({"error": shown(message), "next": shown(hint) if hint else None, "exit_code": exit_code})
    if render.JSON_RESULTS.count:
        # stdout stays one document: the result (a check's report carries the problems) wins.
        sys.stderr.write(document + "\n")
    else:
        sys.stdout.write(document + "\n")
    sys.stdout.flush()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _exit_interrupted(interrupt: KeyboardInterrupt) -> None:
    code, cause = (143, "SIGTERM") if isinstance(interrupt, Terminated) else (130, "Ctrl-C")
    message = f"interrupted ({cause}): nothing half-done was committed; run the command again to resume"
    stderr_console.quiet = False
    stderr_console.print(message, markup=False, highlight=False)
    if OUTPUT.json:
        _json_error(message, "run the command again to resume", code)
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


class _RedactingFormatter(logging.Formatter):
    """Command lines carry index URLs: a credential in one must not reach the log."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self._fmt == "%(message)s" and record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"  # a library's warning reads like ours
        return redact_text(text)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the sys.stderr of the moment (tests swap it), not the one at construction."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


@contextmanager
def _output_settings() -> Iterator[None]:
    """Apply -q/-v/--debug for one run and undo them after (in-process callers run many)."""
    from volume_cli.cli import render

    OUTPUT.__dict__.update(OutputSettings().__dict__)
    render.JSON_RESULTS.count = 0
    handler = _StderrHandler()
    root = logging.getLogger()
    ours = logging.getLogger("volume_cli")
    saved = (root.level, ours.level)
    root.addHandler(handler)

    def apply() -> None:
        # Called once parsing set the flags: the level follows the loudest flag given.
        debug = _debug_enabled()
        handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s" if debug else "%(message)s"))
        root.setLevel(logging.DEBUG if debug else logging.WARNING)
        ours.setLevel(logging.DEBUG if debug else logging.INFO if OUTPUT.verbose else logging.NOTSET)
        handler.setLevel(logging.ERROR if OUTPUT.quiet and not debug else logging.NOTSET)
        stderr_console.quiet = OUTPUT.quiet and not debug

    _APPLY.append(apply)
    apply()
    try:
        yield
    finally:
        _APPLY.remove(apply)
        stderr_console.quiet = False
        root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])


_APPLY: list[Callable[[], None]] = []  # the running call's level setter, for the flags' callbacks


def _settings_parsed() -> None:
    for apply in _APPLY:
        apply()


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits with the command's status.

    Without ``argv`` (the console script, ``python -m volume_cli``) the process
    ends through ``_leave``; in-process callers get the usual ``SystemExit``.
    """
    if argv is None:
        try:
            run(sys.argv[1:])
        except SystemExit as done:
            _leave(done.code)
        _leave(0)
    words = list(argv)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C: locks are released and partial files kept for the resume.
        signal.signal(signal.SIGTERM, _raise_terminated)
    from volume_cli.cli.hints import remember

    remember(words)
    if os.environ.get("_VOLUME_CLI_COMPLETE"):
        from typer._completion_classes import completion_init

        completion_init()  # typer's completion classes answer the scripts `completion SHELL` prints
    with _output_settings():
        _run(words)


def _leave(code: int | str | None) -> NoReturn:
    """End the process the way the interpreter would, without tearing down every module first.

    The interpreter's own exit first waits for threads and runs the exit handlers
    (both done here, in its order), then frees every module and object a command
    loaded: 40-100 ms of every command, measured with the deps engine imported.
    Everything we write is closed and renamed into place before a command returns.
    """
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize runs first: the pools' exit hooks, joins
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code or 0)


def _run(words: list[str]) -> None:
    try:
        # Standalone mode: typer/click print usage errors (exit 2) and handle
        # --help and Exit themselves; our own errors propagate to here.
        build_cli(command_word(words)).main(args=words, prog_name="volume-cli")
    except VolumeCliError as error:
        stderr_console.quiet = False
        report_error(error)
        if _debug_enabled(words):
            traceback.print_exc()  # after the error line, which stays readable above it
        sys.exit(error.exit_code)
    except KeyboardInterrupt as interrupt:
        _exit_interrupted(interrupt)
    except SystemExit as done:
        behind = _interrupt_behind(done) if done.code == 130 else None
        if behind is not None:
            _exit_interrupted(behind)
        _usage_error_as_json(done, words)
        raise
    except Exception as error:
        stderr_console.quiet = False
        _report_unexpected(error, debug=_debug_enabled(words))
        if _debug_enabled(words):
            raise  # the traceback follows the error line; in-process callers get the exception
        sys.exit(1)


def _report_unexpected(error: Exception, *, debug: bool) -> None:
    mapped = file_system_error(error) if isinstance(error, OSError) else None
    if mapped is not None:
        # Permissions, a full or read-only volume: the user's to fix, so an error line, not "internal error".
        report_error(mapped)
        if not debug:
            sys.exit(mapped.exit_code)
        return
    hint = f"rerun with --debug (or {DEBUG_ENV}=1) for the traceback and report it"
    stderr_console.print(
        f"[bold red]internal error:[/] {type(error).__name__}: {escape(shown(str(error)))}",
        markup=True,
        highlight=False,
    )
    stderr_console.print(f"[bold]next:[/] {'report it with the traceback below' if debug else hint}")
    if OUTPUT.json:
        _json_error(f"internal error: {type(error).__name__}: {shown(str(error))}", hint, 1)


def _usage_error_as_json(done: SystemExit, words: Sequence[str]) -> None:
    """click already printed its usage error on stderr; with --json the same goes to stdout as an object."""
    if done.code in (0, None) or not _json_requested(words):
        return
    seen: BaseException | None = done
    while seen is not None and not hasattr(seen, "format_message"):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return
    context = getattr(seen, "ctx", None)
    hint = f"{context.command_path} --help" if context is not None else "volume-cli --help"
    code = done.code if isinstance(done.code, int) else 1
    _json_error(str(seen.format_message()), hint, code)  # type: ignore[attr-defined]
