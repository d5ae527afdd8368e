"""Progress reporting from the core, without the core knowing how it is shown.

Core functions take a ``Progress`` and call it; the CLI passes one that
draws rich bars on a terminal or prints plain periodic lines in container
logs. Everything goes to stderr: stdout is for results.
"""

from __future__ import annotations

from typing import Protocol


class Task(Protocol):
    def advance(self, amount: float = 1) -> None: ...

    def update(
        self, *, completed: float | None = None, total: float | None = None, description: str | None = None
    ) -> None: ...

    def finish(self) -> None: ...


class Progress(Protocol):
    def step(self, message: str) -> None:
        """A new stage started ("resolving", "linking 212 entries")."""

    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def task(self, description: str, *, total: float | None = None, unit: str = "items") -> Task:
        """A measurable piece of work; ``unit="bytes"`` shows speed and ETA."""
        ...


class _NullTask:
    def advance(self, amount: float = 1) -> None:
        pass

    def update(
        self, *, completed: float | None = None, total: float | None = None, description: str | None = None
    ) -> None:
        pass

    def finish(self) -> None:
        pass


class NullProgress:
    """For library use and tests: reports nothing, records warnings."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.warnings: list[str] = []

    def step(self, message: str) -> None:
        self.messages.append(message)

    def info(self, message: str) -> None:
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def task(self, description: str, *, total: float | None = None, unit: str = "items") -> Task:
        return _NullTask()
