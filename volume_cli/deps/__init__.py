"""The incremental dependency engine: locks, a shared store, generations of symlinks.

Everything takes explicit paths and keyword-only flags and returns frozen
dataclasses (each with ``to_dict()`` for JSON output); the CLI only calls
these and renders. Errors are ``volume_cli.errors`` classes.

::

    lock_project(*, layout, project, mirror, upgrade=False, output=None, cache_dir=None,
                 progress, wait_seconds=0) -> LockResult
    install(*, layout, project, mirror, force=False, upgrade=False, dry_run=False,
            cache_dir=None, progress, wait_seconds=0) -> InstallResult
    plan_install(*, layout, project, mirror, force=False, upgrade=False, cache_dir=None,
                 progress) -> InstallPlan
    rollback(*, layout, project, progress, wait_seconds=0, dry_run=False) -> RollbackResult
    check(*, layout, project, imports=True, progress) -> DepsCheckReport          # report.ok
    list_packages(*, layout, project, mirror) -> list[PackageRow]
    gc(*, layout, grace_seconds, dry_run, progress, wait_seconds=0) -> GcReport
    deps_status(*, layout, project, mirror) -> DepsStatus
    store_usage(*, layout) -> StoreUsage

On the volume::

    python-deps/.store/<name>-<version>-<hash12>-pyX.Y/   immutable installed distribution
    python-deps/pyX.Y/.generations/<project>/<gen>/       symlink forest over store entries
    python-deps/pyX.Y/<project> -> .generations/<project>/<gen>   what goes on PYTHONPATH
    .metadata/projects/<project>/{pylock.toml,lock.json,uv.lock,state.json,generations/<gen>.json}
    .metadata/projects/<project>/install-intent.json      an install in progress (gc keeps what it names)

``cache_dir`` (uv's cache) defaults to ``$VOLUME_CLI_UV_CACHE``, else
``$XDG_CACHE_HOME/volume-cli/uv`` or ``~/.cache/volume-cli/uv``: local disk,
never the volume.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from volume_cli.deps.check import DepsCheckReport, FileProblem, ImportFailure, VersionMismatch, check
    from volume_cli.deps.gc import GcReport, gc
    from volume_cli.deps.install import InstallResult, install, plan_install
    from volume_cli.deps.lock import LockResult, lock_project
    from volume_cli.deps.plan import InstallPlan, PackageChange
    from volume_cli.deps.rollback import RollbackResult, rollback
    from volume_cli.deps.status import DepsStatus, PackageRow, StoreUsage, deps_status, list_packages, store_usage
    from volume_cli.deps.uvtool import default_cache_dir

# Imported on first use: `deps install` must not pay for check's, gc's and status's imports at every start.
_HOME = {
    "DepsCheckReport": "check",
    "FileProblem": "check",
    "ImportFailure": "check",
    "VersionMismatch": "check",
    "check": "check",
    "GcReport": "gc",
    "gc": "gc",
    "InstallResult": "install",
    "install": "install",
    "plan_install": "install",
    "LockResult": "lock",
    "lock_project": "lock",
    "InstallPlan": "plan",
    "PackageChange": "plan",
    "RollbackResult": "rollback",
    "rollback": "rollback",
    "DepsStatus": "status",
    "PackageRow": "status",
    "StoreUsage": "status",
    "deps_status": "status",
    "list_packages": "status",
    "store_usage": "status",
    "default_cache_dir": "uvtool",
}


class _EnginePackage(types.ModuleType):
    """``volume_cli.deps.gc`` (and check, install, rollback) stays the function, as when they were imported eagerly.

    Importing a submodule sets the package's attribute of the same name to the
    module; the function of that name is what every caller means.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _HOME.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:  # a submodule (``volume_cli.deps.status``), as the eager imports made available
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


sys.modules[__name__].__class__ = _EnginePackage

__all__ = [
    "DepsCheckReport",
    "DepsStatus",
    "FileProblem",
    "GcReport",
    "ImportFailure",
    "InstallPlan",
    "InstallResult",
    "LockResult",
    "PackageChange",
    "PackageRow",
    "RollbackResult",
    "StoreUsage",
    "VersionMismatch",
    "check",
    "default_cache_dir",
    "deps_status",
    "gc",
    "install",
    "list_packages",
    "lock_project",
    "plan_install",
    "rollback",
    "store_usage",
]
