"""Samples, medians, the results table, the goals of issue 8, and saving/loading a run as JSON.

Pure functions only, so tests/test_bench_counting.py can check them without a mount.
A cell is a list of samples ``[seconds, operations]`` (operations None where nothing ran on
the volume, e.g. an import from local disk); the table shows medians, with min–max of time.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STEPS = (
    "full install",
    "no-op",
    "one leaf upgraded",
    "one package removed",
    "cold import",
    "cold import, copy present",  # volume-cli: a later worker start on the same machine (issue 8's local copy)
    "deps check",
    "gc",
    "gc (the gc() call)",  # bench/netvol_bench.py: the same run's time in gc(), without the process's start
    "gc, most of the store",  # bench/netvol_bench.py: after the requirements drop the big packages
    "gc, most of the store (the gc() call)",
)
ENTRIES = "entries"  # files and folders a tool left on the volume after its full install
VOLUME_CLI, UV, PIP, LOCAL = "volume-cli", "uv --target", "pip --target", "local disk"
BASELINE_SUFFIX = " (baseline)"
Sample = list[float | None]  # [seconds, operations or None]


@dataclass
class Results:
    """Every sample of one benchmark, by tool then step; ``sources`` says where loaded tools came from."""

    title: str
    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, tool: str, step: str, seconds: float | None, operations: int | None) -> None:
        self.samples.setdefault(tool, {}).setdefault(step, []).append([seconds, operations])

    def median(self, tool: str, step: str, part: int) -> float | None:
        values = [sample[part] for sample in self.samples.get(tool, {}).get(step, [])]
        present = [value for value in values if value is not None]
        return statistics.median(present) if present else None

    def spread(self, tool: str, step: str) -> tuple[float, float] | None:
        values = [sample[0] for sample in self.samples.get(tool, {}).get(step, []) if sample[0] is not None]
        return (min(values), max(values)) if values else None

    def runs(self, tool: str, step: str | None = None) -> int:
        """How many runs measured ``step`` for ``tool`` (default: the most of any of its steps)."""
        steps = self.samples.get(tool, {})
        if step is not None:
            return len(steps.get(step, []))
        return max((len(samples) for samples in steps.values()), default=0)


def save(results: Results, path: Path, *, meta: dict[str, Any]) -> None:
    document = {"title": results.title, "meta": meta, "samples": results.samples, "sources": results.sources}
    path.write_text(json.dumps(document, indent=1) + "\n")


def load_into(results: Results, path: Path) -> list[str]:
    """Add the tools saved in ``path``; a tool this run measured too is kept as "<tool> (baseline)".

    Returns the tool names added, so the caller can say under the table where they came from.
    """
    document = json.loads(path.read_text())
    if not results.samples:  # only loaded files: their title is the table's
        results.title = document["title"]
    meta = document.get("meta", {})
    origin = f"loaded from {path.name} (measured {meta.get('date', '?')} at commit {meta.get('commit', '?')})"
    added: list[str] = []
    for tool, steps in document["samples"].items():
        name = tool if tool not in results.samples else tool + BASELINE_SUFFIX
        results.samples[name] = steps
        results.sources[name] = document.get("sources", {}).get(tool, origin)
        added.append(name)
    return added


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def time_cell(results: Results, tool: str, step: str) -> str:
    median = results.median(tool, step, 0)
    if median is None:
        return "n/a"
    spread = results.spread(tool, step)
    timed = sum(1 for sample in results.samples[tool][step] if sample[0] is not None)
    if spread is None or timed < 2:
        return _seconds(median)
    return f"{_seconds(median)} ({spread[0]:.2f}–{spread[1]:.2f})"


def operations_per_entry(results: Results, tool: str) -> float | None:
    operations = results.median(tool, "full install", 1)
    entries = results.median(tool, ENTRIES, 1)
    if operations is None or not entries:
        return None
    return operations / entries


def render_table(results: Results, tools: list[str]) -> str:
    """Markdown: per step, the median time (min–max) and the median operations the volume served."""
    lines = [f"| {results.title} | " + " | ".join(tools) + " |", "|---" * (len(tools) + 1) + "|"]
    for step in STEPS:
        if not any(results.runs(tool, step) for tool in tools):
            continue
        lines.append(f"| {step}, time | " + " | ".join(time_cell(results, tool, step) for tool in tools) + " |")
        counts = [results.median(tool, step, 1) if results.runs(tool, step) else None for tool in tools]
        if any(count is not None for count in counts):
            lines.append(f"| {step}, operations | " + " | ".join(_count(count) for count in counts) + " |")
    per_entry = [operations_per_entry(results, tool) for tool in tools]
    if any(value is not None for value in per_entry):
        cells = ["—" if value is None else f"{value:.1f}" for value in per_entry]
        lines.append("| operations per file or folder installed | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Goal:
    label: str
    ours: tuple[str, str]  # tool, step
    reference: tuple[str, str] | None  # None: ``limit`` is in seconds, not a ratio
    limit: float


GOALS = (
    Goal("full install ≤ 0.1× raw uv", (VOLUME_CLI, "full install"), (UV, "full install"), 0.1),
    Goal("one leaf upgraded ≤ 0.5× raw uv", (VOLUME_CLI, "one leaf upgraded"), (UV, "one leaf upgraded"), 0.5),
    Goal(
        "cold import via `env` ≤ 0.25× plain folder on the volume",
        (VOLUME_CLI, "cold import"),
        (UV, "cold import"),
        0.25,
    ),
    Goal("cold import via `env` ≤ 2× local disk", (VOLUME_CLI, "cold import"), (LOCAL, "cold import"), 2.0),
    Goal(
        "later start (copy present) ≤ 0.25× plain folder on the volume",
        (VOLUME_CLI, "cold import, copy present"),
        (UV, "cold import"),
        0.25,
    ),
    Goal(
        "later start (copy present) ≤ 2× local disk",
        (VOLUME_CLI, "cold import, copy present"),
        (LOCAL, "cold import"),
        2.0,
    ),
    Goal("deps check ≤ 0.2× serial", (VOLUME_CLI, "deps check"), (VOLUME_CLI + BASELINE_SUFFIX, "deps check"), 0.2),
    Goal("gc ≤ 0.2× serial", (VOLUME_CLI, "gc"), (VOLUME_CLI + BASELINE_SUFFIX, "gc"), 0.2),
)


LOCAL_GOALS = (
    Goal("full install ≤ 1.3× raw uv", (VOLUME_CLI, "full install"), (UV, "full install"), 1.3),
    Goal("no-op ≤ 0.5 s", (VOLUME_CLI, "no-op"), None, 0.5),
)


def evaluate(results: Results, goal: Goal) -> tuple[float | None, str]:
    """The measured ratio of median times (or the seconds) and "met", "missed" or why there is none."""
    ours = results.median(*goal.ours, 0)
    if ours is None:
        return None, f"n/a (no {goal.ours[0]} {goal.ours[1]} measured)"
    if goal.reference is None:
        return ours, "met" if ours <= goal.limit else "missed"
    reference = results.median(*goal.reference, 0)
    if reference is None or reference <= 0:
        return None, f"n/a (no {goal.reference[0]} {goal.reference[1]} measured)"
    ratio = ours / reference
    return ratio, "met" if ratio <= goal.limit else "missed"


def render_goals(results: Results, goals: tuple[Goal, ...] = GOALS) -> str:
    lines = ["| goal | measured | status |", "|---|---|---|"]
    for goal in goals:
        value, status = evaluate(results, goal)
        unit = "×" if goal.reference is not None else " s"
        measured = "—" if value is None else f"{value:.2f}{unit}"
        lines.append(f"| {goal.label} | {measured} | {status} |")
    return "\n".join(lines) + "\n"


def render_sources(results: Results, tools: list[str]) -> str:
    notes = [f"- {tool}: {results.sources[tool]}" for tool in tools if tool in results.sources]
    return ("Combined table: " + "\n".join(["", *notes]) + "\n") if notes else ""
