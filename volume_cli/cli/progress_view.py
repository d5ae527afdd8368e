"""Showing core progress: rich bars on a terminal, periodic plain lines in container logs."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Task as RichTaskState
from rich.text import Text

from volume_cli.cli.render import format_bytes, live_terminal, stderr_console
from volume_cli.progress import Task
from volume_cli.redact import shown

PLAIN_INTERVAL_SECONDS = 5.0


class _RichTask:
    def __init__(self, bars: Progress, task_id: TaskID) -> None:
        self._bars = bars
        self._id = task_id

    def advance(self, amount: float = 1) -> None:
        self._bars.advance(self._id, amount)

    def update(
        self, *, completed: float | None = None, total: float | None = None, description: str | None = None
    ) -> None:
        self._bars.update(self._id, completed=completed, total=total, description=description)

    def finish(self) -> None:
        task = self._bars.tasks[self._bars.task_ids.index(self._id)]
        if task.total is not None:
            self._bars.update(self._id, completed=task.total)
        self._bars.stop_task(self._id)


def _is_bytes(task: RichTaskState) -> bool:
    return bool(task.fields.get("unit") == "bytes")


class _AmountColumn(ProgressColumn):
    """``1.2/3.4 GB`` for a bytes task, ``3/14 packages`` for a count: counts never get byte units."""

    def render(self, task: RichTaskState) -> Text:
        if _is_bytes(task):
            done = format_bytes(task.completed)
            return Text(f"{done}/{format_bytes(task.total)}" if task.total is not None else done)
        unit = str(task.fields.get("unit", "items"))
        total = f"/{task.total:.0f}" if task.total is not None else ""
        return Text(f"{task.completed:.0f}{total} {unit}")


class _SpeedColumn(ProgressColumn):
    def render(self, task: RichTaskState) -> Text:
        speed = task.finished_speed or task.speed
        if not _is_bytes(task) or speed is None:
            return Text("")
        return Text(f"{format_bytes(speed)}/s")


class _EtaColumn(TimeRemainingColumn):
    def render(self, task: RichTaskState) -> Text:
        return super().render(task) if _is_bytes(task) else Text("")


class RichProgressView:
    """For a terminal: one bar per task, bytes tasks with speed and ETA."""

    def __init__(self) -> None:
        self._bytes = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            _AmountColumn(),
            _SpeedColumn(),
            _EtaColumn(),
            console=stderr_console,
            transient=False,
        )
        self._started = False

    def _start(self) -> None:
        if not self._started:
            self._bytes.start()
            self._started = True

    def step(self, message: str) -> None:
        stderr_console.print(f"[bold cyan]›[/] {message}")

    def info(self, message: str) -> None:
        stderr_console.print(f"  {message}", markup=False)

    def warn(self, message: str) -> None:
        stderr_console.print(f"[bold yellow]warning:[/] {escape(shown(message))}")

    def task(self, description: str, *, total: float | None = None, unit: str = "items") -> Task:
        self._start()
        return _RichTask(self._bytes, self._bytes.add_task(description, total=total, unit=unit))

    def close(self) -> None:
        if self._started:
            self._bytes.stop()
            self._started = False


class _PlainTask:
    def __init__(self, view: PlainProgressView, description: str, total: float | None, unit: str) -> None:
        self.view = view
        self.description = description
        self.total = total
        self.unit = unit
        self.completed = 0.0
        self.started = time.monotonic()
        self.last_print = self.started
        self._lock = threading.Lock()

    def _amount(self, value: float) -> str:
        return format_bytes(value) if self.unit == "bytes" else f"{value:.0f}"

    def _suffix(self) -> str:
        return "" if self.unit == "bytes" else f" {self.unit}"

    def line(self) -> str:
        done = self._amount(self.completed)
        if self.total:
            percent = min(100.0, 100 * self.completed / self.total)
            text = f"{self.description}: {done}/{self._amount(self.total)}{self._suffix()} ({percent:.0f}%)"
        else:
            text = f"{self.description}: {done}{self._suffix()}"
        elapsed = time.monotonic() - self.started
        if self.unit == "bytes" and elapsed > 0:
            text += f", {format_bytes(self.completed / elapsed)}/s"
        return text

    def advance(self, amount: float = 1) -> None:
        with self._lock:
            self.completed += amount
            self._maybe_print()

    def update(
        self, *, completed: float | None = None, total: float | None = None, description: str | None = None
    ) -> None:
        with self._lock:
            if completed is not None:
                self.completed = completed
            if total is not None:
                self.total = total
            if description is not None:
                self.description = description
            self._maybe_print()

    def _maybe_print(self) -> None:
        now = time.monotonic()
        if now - self.last_print >= self.view.interval:
            self.last_print = now
            self.view.emit(self.line())

    def finish(self) -> None:
        if self.total is not None:
            self.completed = self.total
        if self.completed:  # an empty task (nothing to do) is not worth a log line
            self.view.emit(self.line() + " done")


class PlainProgressView:
    """For logs: a line per step, and a line per task every few seconds."""

    def __init__(self, interval: float = PLAIN_INTERVAL_SECONDS) -> None:
        self.interval = interval

    def emit(self, text: str) -> None:
        if stderr_console.quiet:  # -q: errors and the result only
            return
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def step(self, message: str) -> None:
        self.emit(f"> {message}")

    def info(self, message: str) -> None:
        self.emit(f"  {message}")

    def warn(self, message: str) -> None:
        self.emit(f"warning: {shown(message)}")

    def task(self, description: str, *, total: float | None = None, unit: str = "items") -> Task:
        return _PlainTask(self, description, total, unit)

    def close(self) -> None:
        pass


class ProgressView:
    """Context manager picking the right view for stderr."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.view: RichProgressView | PlainProgressView = (
            RichProgressView() if live_terminal(stderr_console) and not quiet else PlainProgressView()
        )

    def __enter__(self) -> RichProgressView | PlainProgressView:
        return self.view

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.view.close()
