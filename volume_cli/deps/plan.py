"""What is installed (read from disk) and what an install would change.

The truth for "installed" is the generation's ``*.dist-info`` folders, never
a recorded list: a record can be stale, the disk cannot. Each dist-info in a
forest is a link into a store entry, which tells which build is installed.
Store entries never change once published, so a link into an entry that is
still in the store and that the generation's record describes is read from
that record (its name and version come from the same METADATA): one readlink
instead of a walk through the link into the store (on the simulated volume,
the 44-wheel set's read went from 583 operations to about 100).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from volume_cli.deps.dist_info import read_metadata_fields
from volume_cli.deps.documents import EntryInfo, LockedPackage
from volume_cli.deps.entries import base_key, entry_key


@dataclass(frozen=True)
class InstalledDistribution:
    name: str
    version: str
    dist_info: str
    entry: str | None  # the store entry it links to; None for a plain folder


def read_installed(
    generation: Path, *, recorded: Iterable[EntryInfo] = (), store_dir: Path | None = None
) -> dict[str, InstalledDistribution]:
    """Distributions in a generation folder; {} if there is none.

    A dist-info linked into one of the ``recorded`` entries (the generation's
    record) that ``store_dir`` still holds is taken from the record; any other
    (a plain folder, a link the record does not know) from its METADATA.
    """
    try:
        # One handle: each readlink then looks up one name, not the project's link and the path again.
        handle = os.open(generation, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    try:
        with os.scandir(handle) as listing:
            names = [child.name for child in listing if child.name.endswith(".dist-info")]
        known = {info.entry: info for info in recorded}
        if known and store_dir is not None:
            present = set(os.listdir(store_dir))  # one listing, not a walk through every link
            known = {entry: info for entry, info in known.items() if entry in present}

        def read(name: str) -> InstalledDistribution | None:
            try:
                entry: str | None = Path(os.readlink(name, dir_fd=handle)).parent.name
            except OSError:
                entry = None  # a plain folder (an older tool's generation)
            info = known.get(entry or "")
            if info is not None and any(item.name == name for item in info.top_level):
                return InstalledDistribution(name=info.name, version=info.version, dist_info=name, entry=entry)
            return _from_metadata(generation / name, entry)

        found = _in_flight(read, names)
    finally:
        os.close(handle)
    return {dist.name: dist for dist in found if dist is not None}


def _from_metadata(dist_info: Path, entry: str | None) -> InstalledDistribution | None:
    try:
        fields = read_metadata_fields(dist_info / "METADATA")
    except OSError:
        return None  # a dangling link or a loop: not installed, whatever its name says
    if "Name" not in fields:
        return None
    name = canonicalize_name(fields["Name"])
    return InstalledDistribution(name=name, version=fields.get("Version", ""), dist_info=dist_info.name, entry=entry)


def _in_flight(
    read: Callable[[str], InstalledDistribution | None], names: list[str]
) -> list[InstalledDistribution | None]:
    """``read`` over ``names`` with several calls in flight: lookups in one folder overlap, creates do not."""
    if len(names) < 4:
        return [read(name) for name in names]
    from concurrent.futures import ThreadPoolExecutor  # here: a small generation never pays for importing it

    with ThreadPoolExecutor(min(16, len(names))) as pool:
        return list(pool.map(read, names))


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
