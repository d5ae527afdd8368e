"""The one way sizes are written, everywhere: decimal SI (1 kB = 1000 B), as disks and uv report them.

Two formatters (one binary, one decimal, both saying "MB") made the same download read "200.0 MB" and
then "209.7 MB"; every size a person sees goes through ``format_bytes``.
"""

from __future__ import annotations

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def format_bytes(count: int | float | None) -> str:
    """``1234567`` → ``"1.2 MB"``; ``None`` (unknown) → ``"-"``."""
    if count is None:
        return "-"
    value = float(count)
    for unit in _UNITS:
        if unit == "B" and abs(value) < 1000:
            return f"{value:.0f} B"
        if abs(value) < 999.95 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} {_UNITS[-1]}"  # unreachable: the last unit always returns


def format_count(count: int | float, noun: str) -> str:
    """``3, "file"`` → ``"3 files"``: counts never borrow a byte unit."""
    whole = int(count)
    return f"{whole} {noun}" if whole == 1 else f"{whole} {noun}s"
