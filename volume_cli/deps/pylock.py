"""Reading a PEP 751 ``pylock.toml`` and choosing each package's artifact for X.Y.

The lock is universal over the environments uv was told about; for
installing we need, per package, the one wheel whose tags fit CPython X.Y on
manylinux x86_64 (or the sdist when the package has no wheels at all).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from packaging.utils import canonicalize_name

from volume_cli.deps.documents import LockedFile, LockedPackage
from volume_cli.deps.python import TargetPython, marker_matches, wheel_rank
from volume_cli.errors import ResolutionError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

TOOL_TABLE = "volume-cli"


def parse_pylock(text: str, *, source: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ResolutionError(f"{source}: not a valid pylock.toml: {exc}") from None
    if not str(data.get("lock-version", "")).startswith("1."):
        raise ResolutionError(f"{source}: unsupported lock-version {data.get('lock-version')!r}")
    return data


def _file(raw: Mapping[str, Any]) -> LockedFile:
    url = str(raw.get("url") or raw.get("path") or "")
    filename = str(raw.get("name") or url.rsplit("/", 1)[-1].split("#", 1)[0])
    hashes = raw.get("hashes") or {}
    size = raw.get("size")
    return LockedFile(
        url=url, filename=filename, sha256=hashes.get("sha256"), size=int(size) if size is not None else None
    )


def select_packages(
    data: Mapping[str, Any], *, target: TargetPython, groups_by_package: Mapping[str, str], source: str
) -> list[LockedPackage]:
    """The packages that apply to ``target``, each with its chosen artifact.

    Raises naming the package when no wheel fits and there is no sdist, or
    when only an sdist exists and there is no interpreter of X.Y to build it.
    """
    selected: list[LockedPackage] = []
    for raw in data.get("packages", []):
        name = canonicalize_name(str(raw["name"]))
        if not marker_matches(raw.get("marker"), target):
            continue
        version = str(raw.get("version", ""))
        wheels = [_file(wheel) for wheel in raw.get("wheels", [])]
        ranked = sorted(
            (rank, index, wheel)
            for index, wheel in enumerate(wheels)
            if (rank := wheel_rank(wheel.filename, target.version)) is not None
        )
        sdist = _file(raw["sdist"]) if raw.get("sdist") else None
        wheel = ranked[0][2] if ranked else None
        if wheel is None and sdist is None:
            available = ", ".join(w.filename for w in wheels) or "none"
            raise ResolutionError(
                f"{name}=={version} has no wheel for CPython {target.version} on manylinux x86_64 (wheels: {available})",
                hint=f"pin a version of {name} that ships such a wheel, or change the project's python_version",
            )
        if wheel is None and target.interpreter is None:
            raise ResolutionError(
                f"{name}=={version} is only available as a source distribution and no Python {target.version} "
                "interpreter is available to build it",
                hint=f"install Python {target.version} on this machine (pyenv/uv), or pin a version of {name} with wheels",
            )
        selected.append(
            LockedPackage(
                name=name,
                version=version,
                index=raw.get("index"),
                group=groups_by_package.get(name),
                wheel=wheel,
                sdist=sdist if wheel is None else None,
            )
        )
    return sorted(selected, key=lambda package: package.name)
