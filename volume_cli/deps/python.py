"""The target Python: finding an interpreter of X.Y and the wheel tags it accepts.

Deps are installed for the project's Python X.Y on linux x86_64, whatever
Python runs volume-cli. An interpreter of X.Y is optional: with one we
compile bytecode, build sdists and run import checks; without one we install
wheels by tag only.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from volume_cli.deps.uvtool import uv_binary
from volume_cli.errors import SubprocessError
from volume_cli.runner import run

# Serverless images are Debian/Ubuntu based; 2.28 (Debian 10 / RHEL 8) is the
# newest glibc we can assume, and is what uv's x86_64-manylinux_2_28 means.
MANYLINUX_GLIBC_MINOR = 28
UV_PLATFORM = f"x86_64-manylinux_2_{MANYLINUX_GLIBC_MINOR}"


@dataclass(frozen=True)
class TargetPython:
    version: str
    interpreter: Path | None

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.version.split(".")
        return int(major), int(minor)

    @property
    def abi(self) -> str:
        major, minor = self.version_tuple
        return f"cp{major}{minor}"


def manylinux_platforms() -> list[str]:
    platforms: list[str] = []
    for minor in range(MANYLINUX_GLIBC_MINOR, 4, -1):
        platforms.append(f"manylinux_2_{minor}_x86_64")
        legacy = {17: "manylinux2014_x86_64", 12: "manylinux2010_x86_64", 5: "manylinux1_x86_64"}.get(minor)
        if legacy:
            platforms.append(legacy)
    return platforms


@functools.cache
def target_tags(version: str) -> dict[Tag, int]:
    """Tags a CPython ``version`` on manylinux x86_64 accepts, best first (tag → rank)."""
    major, minor = (int(part) for part in version.split("."))
    platforms = manylinux_platforms()
    abi = f"cp{major}{minor}"
    ordered: list[Tag] = list(cpython_tags((major, minor), abis=[abi], platforms=platforms))
    ordered += list(compatible_tags((major, minor), interpreter=abi, platforms=platforms))
    return {tag: rank for rank, tag in enumerate(ordered)}


def wheel_rank(filename: str, version: str) -> int | None:
    """Rank of the best tag of wheel ``filename`` for ``version`` (lower is better), None if unusable."""
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    ranks = target_tags(version)
    found = [ranks[tag] for tag in tags if tag in ranks]
    return min(found) if found else None


def marker_environment(target: TargetPython) -> dict[str, str]:
    full = f"{target.version}.0"
    if target.interpreter is not None:
        full = _interpreter_full_version(str(target.interpreter)) or full
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": target.version,
        "sys_platform": "linux",
    }


def marker_matches(marker: str | None, target: TargetPython) -> bool:
    if not marker:
        return True
    environment = marker_environment(target)
    return Marker(marker).evaluate(environment)  # type: ignore[arg-type]


@functools.cache
def _interpreter_full_version(interpreter: str) -> str | None:
    if interpreter == sys.executable:
        return ".".join(str(part) for part in sys.version_info[:3])
    try:
        completed = run(
            [interpreter, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
            label="python-version",
            timeout=30,
            keep_stderr=False,
        )
    except SubprocessError:
        return None
    return completed.output.strip() or None


def _pyenv_candidates(version: str) -> Iterator[Path]:
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    seen: set[Path] = set()
    for root in filter(None, roots):
        versions = Path(root) / "versions"
        if versions in seen:
            continue
        seen.add(versions)
        try:
            folders = sorted(versions.glob(f"{version}.*"), reverse=True)
        except OSError:
            continue
        for folder in folders:
            # "3.10.13" but not "3.10.13t" (free-threaded) or "3.100"
            suffix = folder.name[len(version) + 1 :]
            if suffix.isdigit():
                yield folder / "bin" / f"python{version}"


def _uv_find(version: str, uv: str) -> Path | None:
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    try:
        completed = run(
            [uv, "python", "find", "--no-project", "--system", version],
            label="uv-python-find",
            env=env,
            timeout=60,
            check=False,
            keep_stderr=False,
        )
    except SubprocessError:
        return None
    found = completed.output.strip()
    return Path(found) if completed.returncode == 0 and found else None


def find_target(version: str) -> TargetPython:
    """Python X.Y as installs target it, with its interpreter when one is found (else wheels only, no bytecode)."""
    return TargetPython(version, find_interpreter(version, uv_binary()))


@functools.cache
def find_interpreter(version: str, uv: str | None = None) -> Path | None:
    """An interpreter of ``version``: this one, a pyenv one, or one uv finds (never downloaded).

    pyenv is looked at before uv: uv stops at the first pyenv shim for a
    version pyenv does not have selected, instead of looking further.
    """
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(sys.executable)
    for candidate in _pyenv_candidates(version):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    if uv is not None:
        found = _uv_find(version, uv)
        if found is not None and _interpreter_full_version(str(found)) is not None:
            full = _interpreter_full_version(str(found)) or ""
            if full.rsplit(".", 1)[0] == version:
                return found
    return None
