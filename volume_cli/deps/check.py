"""``check``: is the current generation what the lock says, byte for byte, and does it import?

Compared with the stored lock: missing, extra, wrong versions and builds
(from the dist-info METADATA on disk), files changed since install (RECORD
hashes). With an interpreter of X.Y, each distribution's real top-level
modules (from top_level.txt or RECORD, never guessed from the package name:
scikit-learn is ``sklearn``) are imported in a fresh isolated process.

What counts as broken, exactly:

- Bytecode in ``__pycache__`` is not compared with RECORD: some wheels list
  it (numpy) and ``--compile-bytecode`` rewrites it; Python checks it against
  its source anyway.
- Modules are imported where a user imports them: top-level modules and
  packages. Inside a namespace package (``google/`` has no ``__init__``) the
  portions are imported instead, and some are optional adapters
  (``google.longrunning.operations_pb2_grpc`` needs ``grpc``, which the
  distribution does not require). A portion that fails only because a module
  absent from the generation is missing is a warning; every other failure,
  and any failure of a top-level module, is an error.
- A ``no_deps`` group's packages were installed without their declared
  requirements on purpose; those not met in the generation are warnings.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import tempfile
from dataclasses import asdict, dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from volume_cli.deps.dist_info import read_record, record_digest, record_problems
from volume_cli.deps.forest import current_generation
from volume_cli.deps.lock import CurrentLock, read_current_lock
from volume_cli.deps.plan import InstalledDistribution, compute_plan, read_installed
from volume_cli.deps.python import find_interpreter
from volume_cli.deps.uvtool import uv_binary
from volume_cli.layout import VolumeLayout
from volume_cli.parallel import run_spread
from volume_cli.progress import Progress
from volume_cli.project.definition import ProjectDefinition
from volume_cli.runner import run

# Not modules anyone imports: data folders of wheels, and test/build files
# some wheels ship at top level by mistake.
_NOT_MODULES = {"bin", "include", "share", "etc", "man", "lib", "__pycache__", "tests", "test", "conftest", "setup"}


@dataclass(frozen=True)
class VersionMismatch:
    name: str
    locked: str
    installed: str


@dataclass(frozen=True)
class FileProblem:
    distribution: str
    path: str
    problem: str  # "changed" or "missing"


@dataclass(frozen=True)
class ImportFailure:
    distribution: str
    module: str
    error: str


@dataclass(frozen=True)
class UnmetRequirement:
    distribution: str
    requirement: str
    installed: str | None  # the version in the generation, None when absent


@dataclass(frozen=True)
class DepsCheckReport:
    project: str
    python_version: str
    generation: str | None
    lock_hash: str | None
    problems: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    wrong_versions: tuple[VersionMismatch, ...] = ()
    wrong_builds: tuple[str, ...] = ()
    file_problems: tuple[FileProblem, ...] = ()
    import_failures: tuple[ImportFailure, ...] = ()
    import_warnings: tuple[ImportFailure, ...] = ()  # optional portions of namespace packages
    unmet_requirements: tuple[UnmetRequirement, ...] = ()  # of no_deps packages: warnings
    distributions_checked: int = 0
    files_checked: int = 0
    modules_imported: int = 0
    interpreter: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not (
            self.problems
            or self.missing
            or self.extra
            or self.wrong_versions
            or self.wrong_builds
            or self.file_problems
            or self.import_failures
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _verify_files(
    root: Path, dist: InstalledDistribution, store: Path, digests: _Digests
) -> tuple[list[FileProblem], list[str]]:
    problems, paths = record_problems(root, digests.records[dist.name], digest_of=digests.of)
    found: list[FileProblem] = []
    for path, problem in problems:
        if problem == "changed" and dist.entry is not None and _clash_is_intact(root / path, store / dist.entry, path):
            continue
        found.append(FileProblem(dist.name, path, problem))
    return found, paths


class _Digests:
    """Every RECORD and every file's hash, read with many calls in flight (``volume_cli/parallel.py``).

    On a network volume hashing file after file waits one round trip per
    open and per read; spread across folders, the waits overlap.
    """

    def __init__(self, root: Path, installed: dict[str, InstalledDistribution]) -> None:
        self.records: dict[str, list[tuple[str, str, str]]] = {}
        self._found: dict[Path, str | OSError] = {}

        def read(dist: InstalledDistribution) -> None:
            self.records[dist.name] = read_record(root / dist.dist_info / "RECORD")

        run_spread(((dist.dist_info, dist) for dist in installed.values()), read)
        normal = [posixpath.normpath(path) for rows in self.records.values() for path, digest, _ in rows if digest]
        files = [root / path for path in normal if not path.startswith(("../", "/")) and path != ".."]
        run_spread(((str(path.parent), path) for path in files), self._hash)

    def _hash(self, path: Path) -> None:
        try:
            self._found[path] = record_digest(path)
        except OSError as exc:
            self._found[path] = exc

    def of(self, path: Path) -> str:
        found = self._found.get(path)
        if found is None:
            return record_digest(path)
        if isinstance(found, OSError):
            raise found
        return found


def _clash_is_intact(linked: Path, entry: Path, path: str) -> bool:
    """True when ``linked`` is another distribution's copy of a path both ship, and ours is not damaged.

    Site-packages keeps one copy of a path two wheels ship (the last one
    installed), and so does the forest: the copy it links is checked against
    its owner's RECORD. Ours may be absent (both were installed by one uv
    call), but if it is there it must be intact.
    """
    if os.path.realpath(linked).startswith(os.path.realpath(entry) + os.sep):
        return False
    if not (entry / path).exists():
        return True
    try:
        rows = {posixpath.normpath(row[0]): row[1] for row in read_record(next(entry.glob("*.dist-info/RECORD")))}
        return record_digest(entry / path) == rows.get(path)
    except (OSError, StopIteration):
        return False


def next_step(report: DepsCheckReport) -> str:
    """The command that fixes what ``report`` found (the CLI's ``next:`` line)."""
    install = f"volume-cli deps install --project {report.project}"
    if report.file_problems:
        return f"{install} --force  (verifies every store entry and repairs only the damaged files)"
    if report.problems or report.missing or report.extra or report.wrong_versions or report.wrong_builds:
        return f"{install}  (applies the lock)"
    if report.import_failures:
        return (
            "the files match the lock, so reinstalling does not help: a module the import needs is not locked; "
            f"add its distribution to the project's dependencies.yaml, then run: {install}"
        )
    return f"volume-cli deps check --project {report.project}"


def top_level_modules(record_paths: list[str], top_level_txt: list[str] | None = None) -> list[str]:
    """Importable top-level modules of a distribution, from its RECORD paths.

    A folder without ``__init__.py`` is a namespace package: its modules are
    one level down (``google/protobuf`` → ``google.protobuf``). ``top_level.txt``
    narrows the list where it agrees with RECORD (it may be stale or absent).
    """
    found = _modules(record_paths, "")
    if top_level_txt:
        wanted = {name.strip().replace("/", ".") for name in top_level_txt if name.strip()}
        narrowed = [module for module in found if module.split(".")[0] in {w.split(".")[0] for w in wanted}]
        if narrowed:
            return narrowed
    return found


def _is_code(name: str) -> bool:
    return name.endswith(".py") or name.endswith(".so")


def _modules(paths: list[str], prefix: str) -> list[str]:
    names: set[str] = set()
    folders: dict[str, list[str]] = {}
    for path in paths:
        head, sep, rest = path.partition("/")
        if not sep:
            if _is_code(head):
                names.add(head.split(".", 1)[0])
            continue
        folders.setdefault(head, []).append(rest)
    for folder, inside in folders.items():
        if "." in folder or "-" in folder or folder in _NOT_MODULES or not folder.isidentifier():
            continue
        if "__init__.py" in inside or any(_is_code(name) and name.startswith("__init__.") for name in inside):
            names.add(folder)
        elif any(_is_code(posixpath.basename(name)) for name in inside):
            names.update(f"{folder}.{module}" for module in _modules(inside, f"{prefix}{folder}."))
    return sorted(
        name for name in names if name.split(".")[0] not in _NOT_MODULES and name.split(".")[-1].isidentifier()
    )


_IMPORT_SCRIPT = """
import importlib, importlib.util, json, sys
path, wanted, out = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, path)
failures = []
for dist, module in json.load(open(wanted)):
    try:
        importlib.import_module(module)
    except BaseException as exc:
        # Absent: the missing module's top-level package is nowhere on the path (an optional dependency).
        missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
        absent = bool(missing) and importlib.util.find_spec(missing.split(".")[0]) is None
        failures.append([dist, module, f"{type(exc).__name__}: {exc}"[:500], absent])
json.dump(failures, open(out, "w"))
"""


@dataclass(frozen=True)
class _LockDiff:
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    wrong_versions: tuple[VersionMismatch, ...] = ()
    wrong_builds: tuple[str, ...] = ()
    unmet_requirements: tuple[UnmetRequirement, ...] = ()


def _against_lock(
    project: ProjectDefinition,
    generation: str,
    lock: CurrentLock,
    root: Path,
    installed: dict[str, InstalledDistribution],
) -> _LockDiff:
    """The lock against the generation in check's words; the comparison itself is install's ``compute_plan``."""
    python_version = project.python_version
    plan = compute_plan(
        project=project.name,
        python_version=python_version,
        current_generation=generation,
        lock_hash=lock.info.pylock_sha256,
        locked=lock.info.packages,
        installed=installed,
    )
    no_deps = {name for name, group in project.dependencies.groups.items() if group.no_deps}
    unmet: list[UnmetRequirement] = []
    for name, package in sorted(lock.info.by_name().items()):
        if package.group in no_deps and name in installed:
            unmet += unmet_requirements(root, installed[name], installed, python_version)
    return _LockDiff(
        missing=tuple(sorted(change.name for change in plan.add)),
        extra=tuple(sorted(change.name for change in plan.remove)),
        wrong_versions=tuple(
            VersionMismatch(change.name, change.locked_version or "", change.installed_version or "")
            for change in sorted(plan.upgrade + plan.downgrade, key=lambda change: change.name)
        ),
        # A plain folder (no store entry) is rebuilt by install but is not a wrong build.
        wrong_builds=tuple(sorted(change.name for change in plan.reinstall if change.entry is not None)),
        unmet_requirements=tuple(unmet),
    )


def check(
    *, layout: VolumeLayout, project: ProjectDefinition, imports: bool = True, progress: Progress
) -> DepsCheckReport:
    python_version = project.python_version
    generation = current_generation(layout, project.name, python_version)
    lock = read_current_lock(layout, project.name)
    report = functools.partial(
        DepsCheckReport, project.name, python_version, generation, lock.info.pylock_sha256 if lock else None
    )
    if generation is None:
        return report(problems=(f"no generation installed for Python {python_version}",))
    root = layout.deps_path(project.name, python_version)
    if not root.is_dir():
        return report(problems=(f"{root} points at a missing generation",))
    progress.step(f"checking {project.name} generation {generation}")
    installed = read_installed(root)
    problems: list[str] = []
    diff = _LockDiff()
    if lock is None:
        problems.append("no lock stored for this project")
    else:
        diff = _against_lock(project, generation, lock, root, installed)
    file_problems: list[FileProblem] = []
    modules: list[tuple[str, str]] = []
    files_checked = 0
    task = progress.task("verifying files", total=len(installed))
    digests = _Digests(root, installed)
    for name, dist in sorted(installed.items()):
        found, paths = _verify_files(root, dist, layout.store_dir, digests)
        file_problems += found
        files_checked += len(paths)
        top_txt = root / dist.dist_info / "top_level.txt"
        listed = top_txt.read_text().splitlines() if top_txt.is_file() else None
        modules += [(name, module) for module in top_level_modules(paths, listed)]
        task.advance()
    task.finish()
    interpreter = find_interpreter(python_version, uv_binary())
    failures: list[ImportFailure] = []
    warnings: list[ImportFailure] = []
    notes: list[str] = []
    if imports and interpreter is None:
        notes.append(f"no Python {python_version} interpreter here: imports not tested")
    elif imports and interpreter is not None and modules:
        progress.step(f"importing {len(modules)} modules with Python {python_version}")
        failures, warnings = _import_all(layout, interpreter, root, modules)
    return report(
        problems=tuple(problems),
        missing=diff.missing,
        extra=diff.extra,
        wrong_versions=diff.wrong_versions,
        wrong_builds=diff.wrong_builds,
        file_problems=tuple(file_problems),
        import_failures=tuple(failures),
        import_warnings=tuple(warnings),
        unmet_requirements=diff.unmet_requirements,
        distributions_checked=len(installed),
        files_checked=files_checked,
        modules_imported=len(modules) - len(failures) - len(warnings) if imports and interpreter else 0,
        interpreter=str(interpreter) if interpreter else None,
        notes=tuple(notes),
    )


def _target_environment(python_version: str) -> dict[str, str]:
    """Marker values of the workers: CPython ``python_version`` on linux x86_64, no extras."""
    environment: dict[str, str] = {key: str(value) for key, value in default_environment().items()}
    environment.update(
        python_version=python_version,
        python_full_version=f"{python_version}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine="x86_64",
        os_name="posix",
        extra="",
    )
    return environment


def unmet_requirements(
    root: Path, dist: InstalledDistribution, installed: dict[str, InstalledDistribution], python_version: str
) -> list[UnmetRequirement]:
    """The declared requirements of ``dist`` (for the workers' platform) that the generation does not satisfy."""
    with open(root / dist.dist_info / "METADATA", encoding="utf-8", errors="replace") as handle:
        declared = HeaderParser().parse(handle).get_all("Requires-Dist") or []
    environment = _target_environment(python_version)
    unmet: list[UnmetRequirement] = []
    for text in declared:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            unmet.append(UnmetRequirement(dist.name, text, None))
            continue
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        present = installed.get(canonicalize_name(requirement.name))
        if present is None or not requirement.specifier.contains(present.version, prereleases=True):
            unmet.append(UnmetRequirement(dist.name, str(requirement), present.version if present else None))
    return unmet


def _import_all(
    layout: VolumeLayout, interpreter: Path, root: Path, modules: list[tuple[str, str]]
) -> tuple[list[ImportFailure], list[ImportFailure]]:
    """Failures and warnings: a namespace portion (a dotted name) missing an absent module is optional."""
    with tempfile.TemporaryDirectory(prefix="volume-cli-check-") as scratch:
        wanted, out, script = Path(scratch, "wanted.json"), Path(scratch, "out.json"), Path(scratch, "check.py")
        wanted.write_text(json.dumps(modules))
        script.write_text(_IMPORT_SCRIPT)
        # -S: no site-packages, so a module missing from the generation cannot be found elsewhere
        result = run(
            [str(interpreter), "-I", "-S", str(script), str(root), str(wanted), str(out)],
            label="import-check",
            cwd=Path(scratch),
            log_dir=layout.logs_dir,
            check=False,
        )
        if result.returncode != 0 or not out.is_file():
            tail = " | ".join(result.lines[-3:])
            return [ImportFailure("*", "*", f"import check crashed (exit {result.returncode}): {tail}")], []
        failures: list[ImportFailure] = []
        warnings: list[ImportFailure] = []
        for dist, module, error, absent in json.loads(out.read_text()):
            (warnings if absent and "." in module else failures).append(ImportFailure(dist, module, error))
        return failures, warnings
