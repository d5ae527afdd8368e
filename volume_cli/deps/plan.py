"""What is installed (read from disk) and what an install would change.

The truth for "installed" is the generation's ``*.dist-info`` folders and
their METADATA, never a recorded list: a record can be stale, the disk
cannot. Each dist-info in a forest is a link into a store entry, which tells
which build is installed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from volume_cli.deps.dist_info import read_metadata_fields
from volume_cli.deps.documents import LockedPackage
from volume_cli.deps.entries import base_key, entry_key


@dataclass(frozen=True)
class InstalledDistribution:
    name: str
    version: str
    dist_info: str
    entry: str | None  # the store entry it links to; None for a plain folder


def read_installed(generation: Path) -> dict[str, InstalledDistribution]:
    """Distributions in a generation folder, from their dist-info METADATA; {} if there is none."""
    installed: dict[str, InstalledDistribution] = {}
    try:
        children = list(os.scandir(generation))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    for child in children:
        if not child.name.endswith(".dist-info"):
            continue
        entry: str | None = None
        if child.is_symlink():
            entry = Path(os.readlink(child.path)).parent.name
        try:
            fields = read_metadata_fields(Path(child.path) / "METADATA")
        except OSError:
            continue  # a dangling link or a loop: not installed, whatever its name says
        if "Name" not in fields:
            continue
        name = canonicalize_name(fields["Name"])
        installed[name] = InstalledDistribution(
            name=name, version=fields.get("Version", ""), dist_info=child.name, entry=entry
        )
    return installed


@dataclass(frozen=True)
class PackageChange:
    name: str
    installed_version: str | None
    locked_version: str | None
    entry: str | None = None  # the entry currently installed


ChangeKind = Literal["add", "upgrade", "downgrade", "reinstall", "remove", "unchanged"]


@dataclass(frozen=True)
class InstallPlan:
    project: str
    python_version: str
    current_generation: str | None
    lock_hash: str | None
    add: tuple[PackageChange, ...] = ()
    upgrade: tuple[PackageChange, ...] = ()
    downgrade: tuple[PackageChange, ...] = ()
    reinstall: tuple[PackageChange, ...] = ()
    remove: tuple[PackageChange, ...] = ()
    unchanged: tuple[PackageChange, ...] = field(default=(), repr=False)
    # False when no interpreter of the project's Python was found: uv then installs by tag only and
    # compiles nothing, and every worker's cold start pays for it (see missing_interpreter_warning).
    bytecode: bool = True

    @property
    def has_changes(self) -> bool:
        return bool(self.add or self.upgrade or self.downgrade or self.reinstall or self.remove)

    @property
    def to_install(self) -> tuple[PackageChange, ...]:
        return self.add + self.upgrade + self.downgrade + self.reinstall

    def kinds(self) -> dict[str, ChangeKind]:
        """Each package's one kind of change: the vocabulary check and list translate into their own words."""
        buckets: dict[ChangeKind, tuple[PackageChange, ...]] = {
            "add": self.add,
            "upgrade": self.upgrade,
            "downgrade": self.downgrade,
            "reinstall": self.reinstall,
            "remove": self.remove,
            "unchanged": self.unchanged,
        }
        return {change.name: kind for kind, changes in buckets.items() for change in changes}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["has_changes"] = self.has_changes
        return data


def _newer(locked: str, installed: str) -> bool:
    try:
        return Version(locked) > Version(installed)
    except InvalidVersion:
        return locked > installed


def compute_plan(
    *,
    project: str,
    python_version: str,
    current_generation: str | None,
    lock_hash: str | None,
    locked: list[LockedPackage],
    installed: dict[str, InstalledDistribution],
    force: bool = False,
    bytecode: bool = True,
) -> InstallPlan:
    add: list[PackageChange] = []
    upgrade: list[PackageChange] = []
    downgrade: list[PackageChange] = []
    reinstall: list[PackageChange] = []
    unchanged: list[PackageChange] = []
    for package in locked:
        current = installed.get(package.name)
        if current is None:
            add.append(PackageChange(package.name, None, package.version))
            continue
        change = PackageChange(package.name, current.version, package.version, current.entry)
        if current.version != package.version:
            (upgrade if _newer(package.version, current.version) else downgrade).append(change)
        elif force or current.entry is None or base_key(current.entry) != entry_key(package, python_version):
            reinstall.append(change)  # same version, other build (index changed) or forced
        else:
            unchanged.append(change)
    locked_names = {package.name for package in locked}
    remove = [
        PackageChange(name, dist.version, None, dist.entry)
        for name, dist in sorted(installed.items())
        if name not in locked_names
    ]
    return InstallPlan(
        project=project,
        python_version=python_version,
        current_generation=current_generation,
        lock_hash=lock_hash,
        add=tuple(add),
        upgrade=tuple(upgrade),
        downgrade=tuple(downgrade),
        reinstall=tuple(reinstall),
        remove=tuple(remove),
        unchanged=tuple(unchanged),
        bytecode=bytecode,
    )


# Measured (issue 8): a cold import of numpy, pandas, sklearn and transformers without bytecode.
NO_BYTECODE_SLOWDOWN = "about 2.6×"
TROUBLESHOOTING = 'docs/troubleshooting.md, "No Python X.Y on this machine: no bytecode"'


def missing_interpreter_warning(python_version: str) -> tuple[str, str]:
    """What to say, and what to do, when an install finds no interpreter of ``python_version``."""
    return (
        f"no Python {python_version} interpreter on this machine: packages are stored without bytecode, "
        f"so every worker's cold start imports them {NO_BYTECODE_SLOWDOWN} slower",
        f"uv python install {python_version} (or pyenv, deadsnakes, the image's python: see {TROUBLESHOOTING})",
    )
