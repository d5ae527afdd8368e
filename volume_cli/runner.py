"""The one place that runs external commands (uv, python).

Every command is logged, its output lines (stdout and stderr merged, in
order) are streamed to an optional callback so callers can show progress,
and on failure the full output is kept in a log file and ``SubprocessError``
is raised naming the command, with the last lines as ``tail``.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from volume_cli.errors import SubprocessError
from volume_cli.fileops import atomic_write_text

log = logging.getLogger(__name__)

TAIL_LINES = 25
LineCallback = Callable[[str], None]


@dataclass(frozen=True)
class RunResult:
    command: tuple[str, ...]
    returncode: int
    lines: tuple[str, ...]
    seconds: float

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


class Cancel:
    """Lets another thread stop the commands ``run`` runs for it: work that turned out not to be needed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            process = self._process
        if process is not None:
            _stop(process)

    def _attach(self, process: subprocess.Popen[str] | None) -> bool:
        """Watch ``process`` (None: the one before ended); False when cancelled already, so the caller stops it."""
        with self._lock:
            self._process = process
            return not self._cancelled


def format_command(command: Sequence[str]) -> str:
    return " ".join(shlex.quote(part) for part in command)


def run(
    command: Sequence[str | os.PathLike[str]],
    *,
    label: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    on_line: LineCallback | None = None,
    log_dir: Path | None = None,
    check: bool = True,
    timeout: float | None = None,
    keep_stderr: bool = True,
    cancel: Cancel | None = None,
) -> RunResult:
    """Run ``command`` to completion and return its merged output.

    ``label`` names the step in messages and log file names ("uv-lock").
    With ``check`` a non-zero exit raises ``SubprocessError``; the full
    output then goes to ``log_dir/<time>-<label>-<id>.log`` when a
    ``log_dir`` is given. ``env`` replaces the environment entirely.
    A command still running after ``timeout`` seconds is stopped and raises
    ``SubprocessError``. ``keep_stderr=False`` discards stderr, for a value
    read from stdout that a warning on stderr must not corrupt. A command
    stopped through ``cancel`` raises ``SubprocessError`` too.
    """
    argv = [os.fspath(part) for part in command]
    log.info("running %s", format_command(argv))
    started = time.monotonic()
    lines: list[str] = []
    process = _start(argv, label=label, env=env, cwd=cwd, keep_stderr=keep_stderr)
    assert process.stdout is not None
    if cancel is not None and not cancel._attach(process):
        _stop(process)
    # The watchdog stops the child; reading then sees end of file and the loop ends.
    timed_out = threading.Event()
    watchdog = threading.Timer(timeout, _time_out, args=(process, timed_out)) if timeout is not None else None
    if watchdog is not None:
        watchdog.daemon = True
        watchdog.start()
    with process:
        try:
            for raw in process.stdout:
                line = raw.rstrip("\n")
                lines.append(line)
                if on_line is not None:
                    on_line(line)
        except BaseException:
            # Ctrl-C / SIGTERM (or a failing callback): the child must not outlive us, and leaving
            # the block would otherwise wait for it to finish on its own.
            _stop(process)
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if cancel is not None:
                cancel._attach(None)
    returncode = process.wait()
    if cancel is not None and cancel.cancelled:
        raise SubprocessError(f"{label} cancelled: {format_command(argv)}", command=argv, returncode=returncode)
    if timed_out.is_set():
        raise SubprocessError(
            f"{label} timed out after {timeout}s: {format_command(argv)}", command=argv, returncode=returncode
        )
    result = RunResult(tuple(argv), returncode, tuple(lines), time.monotonic() - started)
    log.debug("%s exited %d after %.2fs", label, returncode, result.seconds)
    if check and returncode != 0:
        log_path = write_log(log_dir, label, result) if log_dir is not None else None
        tail = "\n".join(lines[-TAIL_LINES:])
        where = f"; full log: {log_path}" if log_path else ""
        raise SubprocessError(
            f"{label} failed (exit {returncode}): {format_command(argv)}{where}",
            command=argv,
            returncode=returncode,
            log_path=str(log_path) if log_path else None,
            tail=tail,
        )
    return result


def _start(
    argv: list[str], *, label: str, env: Mapping[str, str] | None, cwd: Path | None, keep_stderr: bool
) -> subprocess.Popen[str]:
    try:
        return subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if keep_stderr else subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
    except OSError as exc:
        raise SubprocessError(
            f"{label}: cannot run {argv[0]}: {exc.strerror or exc}", command=argv, returncode=-1
        ) from None


def _time_out(process: subprocess.Popen[str], timed_out: threading.Event) -> None:
    if process.poll() is None:
        timed_out.set()
        _stop(process)


def _stop(process: subprocess.Popen[str], grace: float = 3.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def write_log(log_dir: Path, label: str, result: RunResult) -> Path | None:
    """Keep a command's full output; a failure to write must not hide the real error."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    path = log_dir / f"{stamp}-{label}-{uuid.uuid4().hex[:6]}.log"
    text = (
        f"$ {format_command(result.command)}\n# exit {result.returncode} after {result.seconds:.1f}s\n{result.output}\n"
    )
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)
        return None
    return path


def start_detached(command: Sequence[str], *, label: str) -> bool:
    """Start ``command`` in its own session, outliving this process, output discarded; False if it cannot start.

    For clean-up nobody waits for (removing a local scratch folder); never for work whose result matters.
    """
    log.debug("%s (detached): %s", label, format_command(command))
    try:
        subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or SIGTERM sent to the command's process group spares it
        )
    except OSError:
        return False
    return True
