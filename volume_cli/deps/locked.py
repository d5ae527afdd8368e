"""What the project's lock pins, for other parts of the tool (e.g. which modelscope workers run)."""

from __future__ import annotations

from packaging.utils import canonicalize_name

from volume_cli.deps.documents import pylock_path
from volume_cli.deps.pylock import parse_pylock
from volume_cli.errors import ResolutionError
from volume_cli.layout import VolumeLayout


def locked_version(layout: VolumeLayout, project: str, package: str) -> str | None:
    """Version of ``package`` in the project's pylock.toml; None when unlocked or absent."""
    path = pylock_path(layout, project)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = parse_pylock(text, source=str(path))
    except ResolutionError:
        return None
    wanted = canonicalize_name(package)
    for entry in data.get("packages", []):
        if canonicalize_name(str(entry.get("name", ""))) == wanted:
            version = entry.get("version")
            return str(version) if version else None
    return None
