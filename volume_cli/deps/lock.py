"""Locking: a project's groups resolved with uv into its stored ``pylock.toml``, and reading it back.

The one place for "lock". Reading (``parse_pylock``, ``select_packages``,
``read_current_lock``, ``locked_version``) and writing (``resolve``,
``lock_project``) live together so a newcomer finds both here.

All groups go into one generated ``pyproject.toml`` so there is one joint
resolution. A group with its own ``index_url`` pins its packages to that
index through ``[tool.uv.sources]`` and an ``explicit`` index (torch from the
CUDA index, everything else from the default). ``no_deps`` packages get
``[[tool.uv.dependency-metadata]]`` with no requirements, so they are locked
without their dependencies. ``environments`` restricts the universal lock to
CPython X.Y on linux x86_64, so the lock is the same whatever machine runs it.

The lock is universal over the environments uv was told about; for
installing we need, per package, the one wheel whose tags fit CPython X.Y on
manylinux x86_64 (or the sdist when the package has no wheels at all).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from volume_cli import __version__
from volume_cli.config.dependencies import PYPI_SIMPLE_URL, DependencyConfig
from volume_cli.deps.documents import (
    LockedFile,
    LockedPackage,
    LockInfo,
    lock_info_path,
    pylock_path,
    read_lock_info,
    uv_lock_path,
)
from volume_cli.deps.python import TargetPython, find_target, marker_matches, wheel_rank
from volume_cli.deps.uvtool import (
    default_cache_dir,
    error_excerpt,
    failing_package,
    ignored_index_warnings,
    raise_for_network,
    registry_hint,
    uv_binary,
    uv_environment,
)
from volume_cli.errors import ResolutionError, StateError, SubprocessError
from volume_cli.fileops import atomic_write_text, read_regular_file
from volume_cli.layout import VolumeLayout
from volume_cli.progress import Progress
from volume_cli.project.definition import ProjectDefinition
from volume_cli.runner import Cancel, run
from volume_cli.store.documents import write_document
from volume_cli.store.writer_locks import project_lock

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]


# --- reading a pylock.toml: each package's artifact for X.Y ---

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


# --- resolving with uv into the stored lock ---


@dataclass(frozen=True)
class CurrentLock:
    info: LockInfo
    text: str
    uv_lock: str | None = None  # uv.lock's text, when resolved and not stored yet (``write_lock_files``)


def _toml(value: object) -> str:
    # JSON strings and lists are valid TOML basic strings and arrays.
    return json.dumps(value)


def generated_pyproject(config: DependencyConfig, *, project: str, python_version: str, mirror: str | None) -> str:
    target_marker = f"sys_platform == 'linux' and platform_machine == 'x86_64' and python_version == '{python_version}'"
    requirements: list[str] = []
    sources: dict[str, str] = {}
    no_deps: list[str] = []
    index_names: dict[str, str] = {}
    extra_indexes: list[str] = []
    for _group_name, group in config.ordered_groups:
        for requirement in group.requirements:
            name = canonicalize_name(requirement.name)
            requirements.append(str(requirement))
            if group.index_url:
                index_name = index_names.setdefault(group.index_url, f"pinned-{len(index_names) + 1}")
                sources[name] = index_name
            if group.no_deps:
                no_deps.append(name)
        for url in group.extra_index_urls:
            if url not in extra_indexes:
                extra_indexes.append(url)
    lines = [
        "[project]",
        f"name = {_toml('volume-cli-lock-' + project)}",
        'version = "0"',
        # The runner's Python need not be X.Y: ``environments`` narrows the
        # resolution to X.Y while any Python >= 3.8 may drive uv.
        'requires-python = ">=3.8"',
        f"dependencies = {_toml(requirements)}",
        "",
        "[tool.uv]",
        "package = false",
        f"environments = {_toml([target_marker])}",
        f"required-environments = {_toml([target_marker])}",
        "",
    ]
    for no_deps_name in no_deps:
        lines += ["[[tool.uv.dependency-metadata]]", f"name = {_toml(no_deps_name)}", "requires-dist = []", ""]
    for url, index_name in index_names.items():
        lines += ["[[tool.uv.index]]", f"name = {_toml(index_name)}", f"url = {_toml(url)}", "explicit = true", ""]
    for position, url in enumerate(extra_indexes, start=1):
        lines += ["[[tool.uv.index]]", f"name = {_toml(f'extra-{position}')}", f"url = {_toml(url)}", ""]
    lines += [
        "[[tool.uv.index]]",
        'name = "default"',
        f"url = {_toml(mirror or PYPI_SIMPLE_URL)}",
        "default = true",
        "",
    ]
    if sources:
        lines.append("[tool.uv.sources]")
        lines += [f"{_toml(package)} = {{ index = {_toml(pinned)} }}" for package, pinned in sources.items()]
        lines.append("")
    return "\n".join(lines)


def _groups_by_package(config: DependencyConfig) -> dict[str, str]:
    return {
        canonicalize_name(Requirement(text).name): group_name
        for group_name, group in config.groups.items()
        for text in group.packages
    }


def sha256_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def read_current_lock(layout: VolumeLayout, project: str) -> CurrentLock | None:
    """The stored lock, or None when there is none or its two files disagree (a crash between writes)."""
    info = read_lock_info(layout, project)
    if info is None:
        return None
    try:
        text = pylock_path(layout, project).read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None  # a damaged pylock cannot match its recorded hash either: resolve again
    except OSError as exc:
        raise StateError(f"{pylock_path(layout, project)}: cannot read: {exc.strerror or exc}") from None
    if sha256_text(text) != info.pylock_sha256:
        return None
    return CurrentLock(info=info, text=text)


def resolve(
    *,
    layout: VolumeLayout,
    definition: ProjectDefinition,
    target: TargetPython,
    mirror: str | None,
    upgrade: bool,
    cache_dir: Path,
    progress: Progress,
    store: bool = True,
    cancel: Cancel | None = None,
) -> CurrentLock:
    """Resolve the lock; with ``store`` keep it (pylock.toml, uv.lock, lock.json) under the project lock."""
    project, config, config_hash = definition.name, definition.dependencies, definition.config_hash(mirror=mirror)
    progress.step(f"resolving {config.package_count} requirements for Python {target.version} (linux x86_64)")
    for warning in ignored_index_warnings():
        progress.warn(warning)
    exported, uv_lock_text = _uv_lock_and_export(
        layout=layout,
        project=project,
        config=config,
        target=target,
        mirror=mirror,
        upgrade=upgrade,
        cache_dir=cache_dir,
        progress=progress,
        cancel=cancel,
    )
    pylock_text = _with_tool_table(exported, project=project, python_version=target.version, config_hash=config_hash)
    packages = select_packages(
        parse_pylock(pylock_text, source="uv export"),
        target=target,
        groups_by_package=_groups_by_package(config),
        source="uv export",
    )
    info = LockInfo(
        project=project,
        python_version=target.version,
        config_hash=config_hash,
        pylock_sha256=sha256_text(pylock_text),
        tool_version=__version__,
        packages=packages,
    )
    resolved = CurrentLock(info=info, text=pylock_text, uv_lock=uv_lock_text)
    if not store:
        return resolved
    stored = write_lock_files(layout, resolved)
    report_locked(progress, stored)
    return stored


class EarlyResolve:
    """A fresh lock resolved while an install still starts (project lock, clean-up, reading the volume).

    Resolving only reads the volume (uv.lock, so that uv keeps the versions it locked before) and
    writes there nothing but a log on failure, so it may begin before the project's lock is held.
    Under the lock, ``take`` hands its lock over only if the uv.lock it began from is still the
    volume's (a replaced file is a new inode); else the caller resolves again. Leaving the
    ``with`` block without ``take`` stops uv and waits for the thread.
    """

    def __init__(
        self,
        *,
        layout: VolumeLayout,
        definition: ProjectDefinition,
        target: TargetPython,
        mirror: str | None,
        upgrade: bool,
        cache_dir: Path,
        progress: Progress,
    ) -> None:
        self._previous = None if upgrade else uv_lock_path(layout, definition.name)  # uv --upgrade ignores it
        self._began_from = _identity(self._previous)
        self._cancel = Cancel()
        self._outcome: CurrentLock | Exception | None = None
        arguments = {"layout": layout, "definition": definition, "target": target, "mirror": mirror}
        arguments |= {"upgrade": upgrade, "cache_dir": cache_dir, "progress": progress}
        self._thread = threading.Thread(target=self._resolve, kwargs=arguments, name="early-resolve", daemon=True)
        self._thread.start()

    def _resolve(self, **arguments: Any) -> None:
        try:
            self._outcome = resolve(**arguments, store=False, cancel=self._cancel)
        except Exception as exc:  # raised by take() in the install's thread, as if resolved there
            self._outcome = exc

    def take(self) -> CurrentLock | None:
        """The lock resolved early (or its error), None if the uv.lock it began from was replaced meanwhile."""
        self._thread.join()
        outcome, self._outcome = self._outcome, None
        if outcome is None or _identity(self._previous) != self._began_from:
            return None
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def discard(self) -> None:
        self._cancel.cancel()
        self._thread.join()
        self._outcome = None

    def __enter__(self) -> EarlyResolve:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: object) -> None:
        self.discard()


def _identity(path: Path | None) -> tuple[int, int, int, int] | None:
    """What tells a replaced file from the one seen before: every write replaces the file by a rename."""
    if path is None:
        return None
    try:
        found = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


def report_locked(progress: Progress, lock: CurrentLock) -> None:
    progress.info(f"locked {len(lock.info.packages)} packages")


def write_lock_files(layout: VolumeLayout, lock: CurrentLock) -> CurrentLock:
    """Keep a lock ``resolve`` returned unstored (pylock.toml, uv.lock, lock.json); the caller holds the project lock."""
    project = lock.info.project
    assert lock.uv_lock is not None, "stored already"
    # lock.json last: it names the pylock's hash, so a crash in between leaves a lock that is not trusted.
    # The two it names are written at once (each write is several round trips on a network volume).
    with ThreadPoolExecutor(1) as pool:
        uv_lock = pool.submit(atomic_write_text, uv_lock_path(layout, project), lock.uv_lock)
        atomic_write_text(pylock_path(layout, project), lock.text)
        uv_lock.result()
    write_document(lock_info_path(layout, project), lock.info)
    return CurrentLock(info=lock.info, text=lock.text)


def _uv_lock_and_export(
    *,
    layout: VolumeLayout,
    project: str,
    config: DependencyConfig,
    target: TargetPython,
    mirror: str | None,
    upgrade: bool,
    cache_dir: Path,
    progress: Progress,
    cancel: Cancel | None,
) -> tuple[str, str]:
    """uv's exported pylock.toml and its uv.lock, resolved in a scratch project with no user config."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="volume-cli-lock-") as scratch:
        folder = Path(scratch)
        config_home = folder / "config"
        config_home.mkdir()
        work = folder / "project"
        work.mkdir()
        (work / "pyproject.toml").write_text(
            generated_pyproject(config, project=project, python_version=target.version, mirror=mirror)
        )
        # uv keeps every locked version that still satisfies the config. A planted link is not
        # followed: its target's text would reach uv's error output.
        previous = None if upgrade else read_regular_file(uv_lock_path(layout, project))
        if previous is not None:
            (work / "uv.lock").write_bytes(previous)
        env = uv_environment(cache_dir=cache_dir, config_home=config_home)
        uv = uv_binary()
        lock_command = [uv, "lock", "--python", sys.executable]
        if upgrade:
            lock_command.append("--upgrade")
        export_command = [
            uv,
            "export",
            "--frozen",
            "--format",
            "pylock.toml",
            "--no-header",
            "-o",
            "pylock.toml",
            "--python",
            sys.executable,
        ]
        try:
            run(
                lock_command,
                label="uv-lock",
                env=env,
                cwd=work,
                log_dir=layout.logs_dir,
                on_line=_resolver_line(progress),
                cancel=cancel,
            )
            run(export_command, label="uv-export", env=env, cwd=work, log_dir=layout.logs_dir, cancel=cancel)
        except SubprocessError as exc:
            if cancel is not None and cancel.cancelled:
                raise
            raise_for_network(exc)
            culprit = failing_package(exc.tail, _groups_by_package(config))
            about = f" for {culprit}" if culprit else ""
            indexes = [group.effective_index_url(mirror) for _, group in config.ordered_groups]
            hints = [registry_hint(exc.tail, indexes), f"full log: {exc.log_path}" if exc.log_path else None]
            raise ResolutionError(
                f"resolving {project}'s dependencies failed{about}:\n" + error_excerpt(exc.tail),
                hint="; ".join(hint for hint in hints if hint) or None,
            ) from exc
        return (work / "pylock.toml").read_text(encoding="utf-8"), (work / "uv.lock").read_text(encoding="utf-8")


def _with_tool_table(exported: str, *, project: str, python_version: str, config_hash: str) -> str:
    table = (
        f"\n[tool.{TOOL_TABLE}]\n"
        f"project = {_toml(project)}\n"
        f"python-version = {_toml(python_version)}\n"
        f"config-hash = {_toml(config_hash)}\n"
        'platform = "manylinux_x86_64"\n'
    )
    return exported.rstrip("\n") + "\n" + table


def _resolver_line(progress: Progress) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        if line.startswith(("Resolved ", "warning:")):
            progress.info(line.strip())

    return on_line


# --- lock_project: the `deps lock` use case ---


@dataclass(frozen=True)
class LockResult:
    project: str
    python_version: str
    path: Path  # the stored pylock.toml
    output: Path | None  # the exported copy, when asked for
    lock_hash: str
    config_hash: str
    changed: bool  # differs from the lock stored before
    packages: tuple[LockedPackage, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["output"] = str(self.output) if self.output else None
        data["packages"] = [package.model_dump() for package in self.packages]
        return data


def lock_project(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    mirror: str | None,
    upgrade: bool = False,
    output: Path | None = None,
    cache_dir: Path | None = None,
    progress: Progress,
    wait_seconds: float = 0,
) -> LockResult:
    """Resolve all groups together for the project's Python on linux x86_64 and store the lock.

    Without ``upgrade`` every package keeps its locked version where the
    config still allows it; with it, unpinned requirements move to the newest.
    """
    python_version = project.python_version
    config_hash = project.config_hash(mirror=mirror)
    with project_lock(layout, project.name, command="deps lock", wait_seconds=wait_seconds, progress=progress):
        before = read_current_lock(layout, project.name)
        target = find_target(python_version)
        lock = resolve(
            layout=layout,
            definition=project,
            target=target,
            mirror=mirror,
            upgrade=upgrade,
            cache_dir=cache_dir or default_cache_dir(),
            progress=progress,
        )
    stored = pylock_path(layout, project.name)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stored, output)
    return LockResult(
        project=project.name,
        python_version=python_version,
        path=stored,
        output=output,
        lock_hash=lock.info.pylock_sha256,
        config_hash=config_hash,
        changed=before is None or before.info.pylock_sha256 != lock.info.pylock_sha256,
        packages=tuple(lock.info.packages),
    )


# --- what the lock pins, for other parts of the tool (e.g. which modelscope workers run) ---


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
