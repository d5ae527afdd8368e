"""One error hierarchy for volume-cli.

Every error carries a one-line message and, where there is one, the next
command the user should run. The CLI maps these to exit codes and never shows
a traceback for them unless ``--debug`` / ``VOLUME_CLI_DEBUG=1`` is set.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class VolumeCliError(Exception):
    """Base class: an expected failure with a clear message for the user."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(VolumeCliError):
    """The command line itself is wrong (bad option value, missing argument)."""

    exit_code = 2


class ConfigError(VolumeCliError):
    """A project's configuration file is invalid.

    ``problems`` holds every located problem (``file:line: key.path: what``);
    the message is the first one so a single line still says what is wrong.
    """

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        message = problems[0] if len(problems) == 1 else f"{problems[0]} (and {len(problems) - 1} more)"
        super().__init__(message, hint=hint)
        self.problems = list(problems)


class ProjectNotFoundError(VolumeCliError):
    """No project with the requested name was discovered."""


class DuplicateProjectError(ConfigError):
    """Two project folders declare the same project name."""


class RootError(VolumeCliError):
    """The volume root is missing, not a directory or not writable."""


class StateError(VolumeCliError):
    """A metadata file on the volume is unreadable or from a newer tool."""


class LockHeldError(VolumeCliError):
    """Another live process holds the project's writer lock."""


class InstallError(VolumeCliError):
    """Installing dependencies failed; the current generation was kept."""


class ResolutionError(InstallError):
    """The resolver could not produce a lock for the project's requirements."""


class SubprocessError(VolumeCliError):
    """An external command (uv, python) failed.

    ``command`` is the argv, ``log_path`` where the full output was kept.
    """

    def __init__(
        self,
        message: str,
        *,
        command: list[str],
        returncode: int,
        log_path: str | None = None,
        tail: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.command = command
        self.returncode = returncode
        self.log_path = log_path
        self.tail = tail


class ModelError(VolumeCliError):
    """A model could not be downloaded, verified or found."""


class DownloadError(ModelError):
    """A download failed after retries on every endpoint."""


class ChecksumError(ModelError):
    """Downloaded bytes do not match the expected checksum."""


class DiskSpaceError(VolumeCliError):
    """Not enough free space on the volume for the planned work."""


class FileSystemError(VolumeCliError):
    """The operating system refused a file operation: permissions, a full or read-only volume."""


def file_system_error(error: OSError) -> VolumeCliError | None:
    """The one-line error for an ``OSError`` the user can act on; None for the ones that are our bugs."""
    paths = [Path(os.fsdecode(name)) for name in (error.filename, error.filename2) if isinstance(name, str | bytes)]
    path = paths[-1] if paths else None  # a rename's destination is where it writes
    place = " -> ".join(str(item) for item in paths) or "a file on the volume"
    reason = error.strerror or str(error)
    if error.errno in (errno.EACCES, errno.EPERM):
        folders = " ".join(dict.fromkeys(str(item.parent) for item in paths)) or "."
        return FileSystemError(
            f"permission denied: {place} ({reason})",
            hint=f"make sure this user (uid {os.getuid()}) may write there: ls -ld {folders}; "
            "or run volume-cli as the user that owns the volume",
        )
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        root = _volume_root(path)
        what = "no space left" if error.errno == errno.ENOSPC else "disk quota exceeded"
        return DiskSpaceError(
            f"{what} on the volume {root} (while writing {place})",
            hint=f"free space with: volume-cli gc --root {root}  (and volume-cli models gc), or grow the volume",
        )
    if error.errno == errno.EROFS:
        return FileSystemError(
            f"read-only file system: {place}",
            hint="mount the volume read-write (serverless workers see it read-only: install from a pod)",
        )
    if error.errno in _PATH_PROBLEMS:
        return FileSystemError(f"{reason.lower()}: {place}", hint=f"check the path: {_PATH_PROBLEMS[error.errno]}")
    if error.errno == errno.EIO:
        return FileSystemError(
            f"input/output error on {place}",
            hint="the network volume may be unreachable: check the mount (df -h), then run the command again",
        )
    return None


_PATH_PROBLEMS = {
    errno.ENOTDIR: "a file stands where a folder should be",
    errno.EEXIST: "a file or a broken link stands where a folder should be",
    errno.EISDIR: "a folder stands where a file should be",
    errno.ELOOP: "a symbolic link on it points in a circle",
    errno.ENAMETOOLONG: "it is longer than the file system allows",
}


def _volume_root(path: Path | None) -> Path | str:
    """The volume-cli root holding ``path`` (it has .metadata/volume.json), else the mount point."""
    if path is None:
        return "(unknown)"
    for folder in path.parents:
        if (folder / ".metadata" / "volume.json").is_file():
            return folder
    folder = path
    while not os.path.ismount(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


class RuntimeCheckError(VolumeCliError):
    """A worker-side check (python version, deps, models) failed."""


class DeadlineError(DownloadError):
    """The overall --deadline of a models download/ensure ran out; partial files are kept for resume."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind like Ctrl-C (releasing locks, keeping partial files), exit 143."""


class IndexUnreachableError(InstallError):
    """A package index did not answer (timed out) or could not be reached; the message names its host."""


class HookError(VolumeCliError):
    """A project plugin's hook (after_models) raised; what it was meant to finish is not done."""


class UnsafeIdentifierError(ModelError):
    """A hub, mirror or manifest gave a commit, blob id, file path or size that is not what it claims to be.

    Raised before any path is built from it, so nothing was written or removed.
    """


class UnsafePathError(ModelError):
    """A path about to be written or removed resolves outside the volume's models folder (a planted symlink)."""


class ConfirmationError(VolumeCliError):
    """A destructive command was not confirmed (declined, or no terminal to ask on and no ``--yes``)."""


class UnknownModelError(ModelError):
    """A model key given on the command line names no model on the volume."""


class RemoteConfigError(VolumeCliError):
    """The remotes file (user config dir) is unreadable, from a newer version, or names no such remote."""


class RemoteUnavailableError(VolumeCliError):
    """A remote did not answer in time, or refused the credentials / bucket; the message names its host."""


class MissingExtraError(VolumeCliError):
    """An optional feature needs packages that are not installed (e.g. boto3 for S3 remotes: volume-cli[s3])."""


class ScratchError(InstallError):
    """No folder on the pod's local disk can hold an install's staging folder (``VOLUME_CLI_SCRATCH``)."""


class SyncManifestError(VolumeCliError):
    """A pushed generation's manifest is torn, fails its own checksum, or names a path outside the volume."""


class SyncIncompleteError(VolumeCliError):
    """A pushed generation lacks files on the volume (the push did not finish); the current generation is kept."""


class VolumeFullError(VolumeCliError):
    """The remote answered 507: the network volume is full."""
