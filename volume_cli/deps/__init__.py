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

from volume_cli.deps.check import DepsCheckReport, FileProblem, ImportFailure, VersionMismatch, check
from volume_cli.deps.gc import GcReport, gc
from volume_cli.deps.install import InstallResult, install, plan_install
from volume_cli.deps.lock import LockResult, lock_project
from volume_cli.deps.plan import InstallPlan, PackageChange
from volume_cli.deps.rollback import RollbackResult, rollback
from volume_cli.deps.status import DepsStatus, PackageRow, StoreUsage, deps_status, list_packages, store_usage
from volume_cli.deps.uvtool import default_cache_dir

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
