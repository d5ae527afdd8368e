"""Finding the volume root and checking it is usable."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from volume_cli.errors import RootError
from volume_cli.layout import DEFAULT_ROOTS, ROOT_ENV

RootSource = Literal["option", "environment", "default"]


@dataclass(frozen=True)
class ResolvedRoot:
    path: Path
    source: RootSource


def resolve_root(explicit: str | os.PathLike[str] | None, *, env: Mapping[str, str] | None = None) -> ResolvedRoot:
    """``--root``, then ``VOLUME_CLI_ROOT``, then /workspace, then /runpod-volume."""
    environ = os.environ if env is None else env
    if explicit:
        return ResolvedRoot(_checked_dir(Path(explicit), "--root"), "option")
    from_env = environ.get(ROOT_ENV, "").strip()
    if from_env:
        return ResolvedRoot(_checked_dir(Path(from_env), ROOT_ENV), "environment")
    for candidate in DEFAULT_ROOTS:
        if candidate.is_dir():
            return ResolvedRoot(candidate.absolute(), "default")
    raise RootError(
        "no volume root: neither /workspace nor /runpod-volume exists",
        hint="pass --root PATH or set VOLUME_CLI_ROOT (e.g. --root ./workspace after mkdir -p workspace)",
    )


def _checked_dir(path: Path, origin: str) -> Path:
    path = path.expanduser().absolute()
    if not path.exists():
        raise RootError(
            f"volume root {path} (from {origin}) does not exist",
            hint=f"mount the volume there or create it: mkdir -p {path}",
        )
    if not path.is_dir():
        raise RootError(f"volume root {path} (from {origin}) is not a directory")
    return path


def require_writable(root: Path) -> None:
    """Fail clearly before any work when the root cannot be written."""
    if not os.access(root, os.W_OK | os.X_OK):
        raise RootError(
            f"volume root {root} is not writable by this user", hint=f"check the mount and permissions of {root}"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".volume-cli-write-check-"):
            pass
    except OSError as exc:
        raise RootError(f"volume root {root} is not writable: {exc.strerror or exc}") from None
