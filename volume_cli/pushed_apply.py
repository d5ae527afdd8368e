"""Apply a pushed generation on the mounted volume: the one implementation ``sync apply`` and a starting worker share.

Standard library only: volume-cli copies this file onto the volume as
``volume_cli_pushed_apply.py`` beside the worker boot and the runtime copy,
so a serverless worker with nothing but Python applies a generation that
``sync push`` left pending (``apply_on_start``) exactly as ``volume-cli
sync apply`` does on a pod. The CLI keeps its plan, rendering and error
mapping (volume_cli/sync/apply.py) and writes its records with its own
document models; a worker writes the same documents here (``WorkerRecords``).

What only the mounted volume can do is done here: check every listed file
(size; sha256 when ``deep``), restore modes and mtimes, move staged model
files into place, make the entries' and models' links, build the forest
from the manifest under a temporary name, record it, switch
``pyX.Y/<project>`` with one rename, record the switch, then drop the
pending manifest (last: a run killed anywhere is finished by the next).
Every write goes through ``check_chain``: no link above it, never a path
the manifest could send out of the volume.

The worker's lock is the CLI's lease lock (volume_cli/store/lock.py) written
with the standard library: the same file, the same record (a
``LockRecord``), link-into-place creation, lease renewal and take-over of a
stale holder, so a pod's ``sync apply`` or ``deps install`` and workers
exclude each other. tests/test_sync_worker_apply.py ties the two.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import signal
import socket
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

APPLY_ENV = "VOLUME_CLI_APPLY_ON_START"  # "0": a starting worker never applies a pushed generation
WAIT_ENV = "VOLUME_CLI_APPLY_WAIT_SECONDS"  # how long a starting worker waits for the project's lock
DEFAULT_WAIT_SECONDS = 3.0
LEASE_SECONDS = 60.0  # volume_cli.store.lock.DEFAULT_LEASE_SECONDS
STATE_LEASE_SECONDS = 30.0  # volume_cli.store.state.update_project_state's lock
STORE_LOCK_NAME = "volume-store"  # volume_cli.deps.record.STORE_LOCK_NAME
CRASH_ENV = "VOLUME_CLI_TEST_CRASH_AT"  # volume_cli.deps.faults.CRASH_ENV
PUSHED_DIR = "pushed"
TEMP_PREFIX = ".tmp-"  # volume_cli.deps.forest.TEMP_PREFIX: an unfinished generation folder
FORCED_MARKER = "-f"  # volume_cli.deps.entries.FORCED_MARKER

try:  # inside the volume-cli package: its error hierarchy, mapped by the CLI
    from volume_cli.errors import LockHeldError as LeaseHeld
    from volume_cli.errors import SyncIncompleteError as Incomplete
    from volume_cli.errors import SyncManifestError as Refused
    from volume_cli.errors import UnsafePathError as Unsafe
except ImportError:  # the standalone copy on the volume

    class ApplyError(Exception):
        def __init__(self, message: str, *, hint: str | None = None) -> None:
            super().__init__(message)
            self.message = message
            self.hint = hint

    LeaseHeld = Incomplete = Refused = Unsafe = ApplyError  # type: ignore[misc,assignment]


# -- paths the manifest may name ---------------------------------------------------------
def safe_relative(value: str) -> str:
    """A POSIX path inside the volume: apply joins it to the root, so '..' or '/x' would write elsewhere."""
    parts = value.split("/")
    if not value or value.startswith("/") or any(part in {"", ".", ".."} for part in parts) or "\x00" in value:
        raise ValueError(f"{value!r} is not a plain path relative to the volume root")
    return value


def link_stays_inside(path: str, target: str) -> bool:
    """Whether a link at ``path`` to ``target``, resolved against its own folder, stays under the volume root."""
    if target.startswith("/") or "\x00" in target:
        return False
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return not (resolved == ".." or resolved.startswith("../") or resolved.startswith("/"))


def _check_chain(path: str, root: str) -> str:
    """volume_cli.fsguard.check_chain: ``path`` is below ``root`` and no folder between them is a link."""
    relative = os.path.relpath(os.path.dirname(path), root)
    if os.path.basename(path) in ("", ".", "..") or relative.split(os.sep)[0] == "..":
        raise Unsafe(f"refused to touch {path}: it resolves outside {root}")
    current = root
    for part in relative.split(os.sep) if relative != "." else ():
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return path
        if stat.S_ISLNK(mode):
            raise Unsafe(
                f"refused to touch {path}: {current} above it is a symbolic link (volume-cli never writes through one)",
                hint=f"remove the link {current} (rm {current}), then run the command again",
            )
    return path


def _under(root: str, relative: str) -> str:
    return _check_chain(os.path.join(root, *safe_relative(relative).split("/")), root)


class _Volume:
    """The root an apply writes under, walked through one O_PATH handle per folder.

    ``under`` opens each folder above a path relative to its parent's handle, without following a link
    (``volume_cli.fsguard.check_chain``'s rule), once per apply. On a network volume whose client caches
    nothing, a lookup by full path costs one round trip per component: through the handles a file costs one.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._handles: dict[str, int] = {}

    def under(self, relative: str) -> str:
        """``root/relative``, refused when a folder between them is a link; a missing folder ends the walk."""
        path = os.path.join(self.root, *safe_relative(relative).split("/"))
        folder = self.root
        for part in relative.split("/")[:-1]:
            folder = os.path.join(folder, part)
            try:
                self.handle(folder)
            except FileNotFoundError:
                break
            except OSError:  # ENOTDIR or ELOOP: a link (or a file) where a folder should be
                raise Unsafe(
                    f"refused to touch {path}: {folder} above it is a symbolic link (volume-cli never writes through one)",
                    hint=f"remove the link {folder} (rm {folder}), then run the command again",
                ) from None
        return path

    def handle(self, folder: str) -> int:
        """An O_PATH handle of ``folder`` (checked: no link from the root down), opened once per apply."""
        handle = self._handles.get(folder)
        if handle is None:
            flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
            if folder == self.root:  # the root itself may be a link (/workspace to a mount)
                handle = os.open(folder, flags)
            else:
                parent = self.handle(os.path.dirname(folder))
                handle = os.open(os.path.basename(folder), flags | os.O_NOFOLLOW, dir_fd=parent)
            self._handles[folder] = handle
        return handle

    def lstat(self, path: str) -> os.stat_result | None:
        """``os.lstat(path)`` through its folder's handle; None when the file (or its folder) is missing."""
        try:
            return os.stat(os.path.basename(path), dir_fd=self.handle(os.path.dirname(path)), follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def restore(self, path: str, *, mode: int | None, mtime: int | None) -> None:
        """chmod and utime a regular file (checked) through its folder's handle."""
        folder, name = self.handle(os.path.dirname(path)), os.path.basename(path)
        if mode is not None:
            os.chmod(name, mode, dir_fd=folder)
        if mtime is not None:
            os.utime(name, (mtime, mtime), dir_fd=folder, follow_symlinks=False)

    def write(self, relative: str, data: bytes) -> None:
        """``_atomic_write`` through the folder's handle: a temp file beside the target, fsync, one rename."""
        path = self.under(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        folder, name = self.handle(os.path.dirname(path)), os.path.basename(path)
        temp = f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644, dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=folder)
            except FileNotFoundError:
                pass
            raise

    def close(self) -> None:
        for handle in self._handles.values():
            os.close(handle)
        self._handles = {}


def _base_key(entry: str) -> str:
    """volume_cli.deps.entries.base_key: the entry key without the suffix a forced rebuild adds."""
    head, marker, tail = entry.rpartition(FORCED_MARKER)
    if marker and len(tail) == 8 and all(c in "0123456789abcdef" for c in tail) and "-py" in head:
        return head
    return entry


def _atomic_write(target: str, data: bytes) -> None:
    """Temp file beside ``target``, fsync, one rename (volume_cli.fileops.atomic_write_bytes, same temp names)."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    folder, name = os.path.split(target)
    temp = os.path.join(folder, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        _unlink(temp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _utc_text(moment: datetime | None = None) -> str:
    """A UTC time as the document models write it (seconds)."""
    return (moment or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    # Python 3.10's fromisoformat takes neither the "Z" the document models write nor a fraction of 1-5 digits.
    text = text.replace("Z", "+00:00")
    head, dot, tail = text.partition(".")
    if dot:
        digits = tail[: len(tail) - len(tail.lstrip("0123456789"))]
        text = f"{head}.{digits[:6].ljust(6, '0')}{tail[len(digits) :]}"
    return datetime.fromisoformat(text)


def _crash_point(name: str) -> None:
    """volume_cli.deps.faults.crash_point's kill (the tests' kill -9 at a named step)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


# -- the manifest ---------------------------------------------------------------------------
def manifest_checksum(body: dict[str, Any]) -> str:
    """sha256 of a manifest's fields but its own checksum, as canonical JSON."""
    fields = {key: value for key, value in body.items() if key != "content_sha256"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def pending_dir(project: str) -> str:
    """Folder of pending manifests, relative to the root (an S3 prefix and a folder on the volume)."""
    return f".metadata/projects/{project}/{PUSHED_DIR}"


def staged_key(manifest: dict[str, Any], item: dict[str, Any]) -> str:
    """Where a file was uploaded: its own path, or under the pending folder when apply moves it."""
    if item.get("staged"):
        return f"{pending_dir(manifest['project'])}/{manifest['generation']}/{item['path']}"
    return str(item["path"])


def decode(raw: bytes, *, source: str) -> dict[str, Any]:
    """A pending manifest as plain data; Refused when torn, edited, too new or naming a path outside the volume."""
    hint = f"remove {source}, then push the project again (volume-cli sync push --project P --to NAME)"
    try:
        manifest = json.loads(raw)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise Refused(f"pushed manifest {source} is unreadable ({exc}); it is refused", hint=hint) from None
    if manifest.get("content_sha256") != manifest_checksum(manifest):
        raise Refused(f"pushed manifest {source} fails its own checksum (torn or edited); it is refused", hint=hint)
    if manifest.get("schema_version") != 1:
        raise Refused(f"pushed manifest {source} has format {manifest.get('schema_version')}; it is refused", hint=hint)
    try:
        for item in manifest["files"]:
            safe_relative(item["path"])
        for link in [*manifest["forest_links"], *manifest["links"]]:
            safe_relative(link["path"])
            if not link_stays_inside(link["path"], link["target"]):
                raise ValueError(f"the link {link['path']} -> {link['target']} leaves the volume")
    except (KeyError, TypeError, ValueError) as exc:
        raise Refused(f"pushed manifest {source} is refused: {exc}", hint=hint) from None
    return manifest


def _pending_manifest_paths(root: str, project: str) -> list[str]:
    """The pending manifests' files (one listing), never through a planted link."""
    folder = _under(root, pending_dir(project))
    if os.path.islink(folder):
        raise Unsafe(f"refused to list {folder}: it is a symbolic link")
    try:
        with os.scandir(folder) as listing:
            names = [
                entry.name for entry in listing if entry.name.endswith(".json") and entry.is_file(follow_symlinks=False)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(os.path.join(folder, name) for name in names)


def _oldest_first(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Oldest first, as the CLI orders them (created_at, then the generation's name)."""
    return sorted(manifests, key=lambda manifest: (_parse_time(manifest["created_at"]), manifest["generation"]))


# -- what the CLI and a worker record differently -------------------------------------------
class Records(Protocol):
    """The documents an apply writes: the CLI through its document models, a worker through ``WorkerRecords``."""

    def ensure_held(self) -> None: ...

    def check(self, record: dict[str, Any], models: dict[str, Any] | None) -> None:
        """Refuse a pushed generation record or models record these records could not be written from."""

    def clear_intent(self) -> None: ...

    def record_intent(self, *, generation: str, entries: list[str]) -> None: ...

    def repair_state(self) -> None: ...

    def record_switch(self, record: dict[str, Any], *, previous: str | None) -> None: ...

    def adopt_models(self, models: dict[str, Any] | None) -> None: ...


class Outcome:
    """What one apply did (the CLI turns it into its ApplyResult)."""

    def __init__(self, manifest: dict[str, Any], previous: str | None) -> None:
        self.generation: str = manifest["generation"]
        self.previous = previous
        self.switched = False
        self.files_checked = 0
        self.modes_restored = 0
        self.links_made = 0
        self.forest_links = 0


def apply_newest(
    root: str, pending: list[dict[str, Any]], records: Records, *, deep: bool, step: Callable[[str], None]
) -> Outcome:
    """Apply the newest of ``pending`` (oldest first; read under the project's lock) and drop them all."""
    manifest = pending[-1]
    volume = _Volume(root)
    for relative in ("python-deps", ".metadata"):
        _refuse_link(os.path.join(root, relative))
    records.clear_intent()  # the lock is ours: an intent left here is a killed run's
    records.repair_state()
    current = _current_generation(root, manifest["project"], manifest["python_version"])
    outcome = Outcome(manifest, current)
    try:
        if current != manifest["generation"]:
            _switch_to(volume, manifest, records, outcome, deep=deep, step=step)
        records.adopt_models(_staged_document(volume, manifest, manifest["state"]).get("models"))
        _finish(volume, pending)
    finally:
        volume.close()
    return outcome


def _refuse_link(path: str) -> None:
    if os.path.islink(path):
        raise Unsafe(f"refused to touch {path}: it is a symbolic link (volume-cli never writes through one)")


def _current_generation(root: str, project: str, python_version: str) -> str | None:
    """The generation ``pyX.Y/<project>`` points at (one readlink), or None."""
    try:
        target = os.readlink(os.path.join(root, "python-deps", f"py{python_version}", project))
    except OSError:
        return None
    return os.path.basename(target.rstrip("/")) or None


def _switch_to(
    volume: _Volume,
    manifest: dict[str, Any],
    records: Records,
    outcome: Outcome,
    *,
    deep: bool,
    step: Callable[[str], None],
) -> None:
    project, python_version, generation = manifest["project"], manifest["python_version"], manifest["generation"]
    step(f"checking {len(manifest['files'])} files of {generation}" + (" (sha256)" if deep else ""))
    found = _check_files(volume, manifest, deep=deep)
    record = _staged_document(volume, manifest, manifest["generation_record"])
    if (record.get("generation"), record.get("project"), record.get("python_version")) != (
        generation,
        project,
        python_version,
    ):
        raise Refused(f"the pushed generation record of {project} does not match its manifest")
    records.check(record, _staged_document(volume, manifest, manifest["state"]).get("models"))  # before any change
    records.record_intent(generation=generation, entries=[_base_key(entry) for entry in manifest["entries"]])
    _place_model_files(volume, manifest)
    outcome.modes_restored = _restore_files(volume, manifest, found)
    outcome.links_made = sum(_make_link(volume, link) for link in manifest["links"])
    step(f"linking {len(manifest['entries'])} distributions")
    outcome.forest_links = _build_generation(volume, manifest)
    _crash_point("sync-forest-built")
    # Last before the switch: a refused forest leaves the volume's lock and model records as they were.
    for relative in [*manifest["lock_files"], *manifest["model_manifests"]]:
        volume.write(relative, _staged_bytes(volume, manifest, relative))
    records.ensure_held()
    _switch_link(volume, manifest)
    _crash_point("sync-switched")
    records.record_switch(record, previous=outcome.previous)
    records.clear_intent()
    outcome.switched = True
    outcome.files_checked = len(manifest["files"])


def _staged_bytes(volume: _Volume, manifest: dict[str, Any], relative: str) -> bytes:
    item = next(item for item in manifest["files"] if item["path"] == relative)
    with open(volume.under(staged_key(manifest, item)), "rb") as handle:
        return handle.read()


def _staged_document(volume: _Volume, manifest: dict[str, Any], relative: str) -> dict[str, Any]:
    try:
        document = json.loads(_staged_bytes(volume, manifest, relative))
    except (OSError, ValueError) as exc:
        raise Refused(f"pushed document {relative} of {manifest['generation']} is unreadable: {exc}") from None
    if not isinstance(document, dict):
        raise Refused(f"pushed document {relative} of {manifest['generation']} is not a JSON object")
    return document


def _documents(manifest: dict[str, Any]) -> set[str]:
    """Staged files apply writes as documents; the other staged files (model files) it moves into place."""
    return {
        manifest["generation_record"],
        manifest["state"],
        *manifest["lock_files"],
        *manifest["model_manifests"],
    }


def _hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_files(volume: _Volume, manifest: dict[str, Any], *, deep: bool) -> dict[str, os.stat_result]:
    """Every listed file is a regular file of its size (and hash); else nothing changes and the push must finish.

    Returns what was found per path, for ``_restore_files`` (a moved file keeps its inode).
    """
    bad: list[str] = []
    found: dict[str, os.stat_result] = {}
    documents = _documents(manifest)
    for item in manifest["files"]:
        path = volume.under(staged_key(manifest, item))
        info = volume.lstat(path)
        if info is None and item.get("staged") and item["path"] not in documents:
            path = volume.under(item["path"])  # moved into place by a killed apply
            info = volume.lstat(path)
        if info is None:
            bad.append(f"{item['path']} (missing)")
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_size != item["size"]:
            bad.append(f"{item['path']} ({info.st_size} bytes, expected {item['size']})")
        elif deep and _hash(path) != item["sha256"]:
            bad.append(f"{item['path']} (sha256 differs)")
        found[item["path"]] = info
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        project = manifest["project"]
        raise Incomplete(
            f"generation {manifest['generation']} of {project} is incomplete on this volume: "
            f"{', '.join(bad[:3])}{more}; the current generation was kept",
            hint=f"run the push again (it uploads only what is missing): volume-cli sync push --project {project}",
        )
    return found


def _restore_files(volume: _Volume, manifest: dict[str, Any], found: dict[str, os.stat_result]) -> int:
    """Modes and mtimes S3 dropped (an executable bit, the mtime a timestamp .pyc checks); returns files changed."""
    changed = 0
    documents = _documents(manifest)
    for item in manifest["files"]:
        if item["path"] in documents:
            continue
        info = found[item["path"]]  # a regular file, now at its own path (_place_model_files moved it)
        mode = item["mode"] if stat.S_IMODE(info.st_mode) != item["mode"] else None
        mtime = item["mtime"] if int(info.st_mtime) != item["mtime"] else None
        if mode is not None or mtime is not None:
            volume.restore(volume.under(item["path"]), mode=mode, mtime=mtime)
        changed += mode is not None
    return changed


def _place_model_files(volume: _Volume, manifest: dict[str, Any]) -> None:
    """Staged model files (refs, URL and local models' files) renamed into place: one rename each, same volume."""
    documents = _documents(manifest)
    for item in manifest["files"]:
        if not item.get("staged") or item["path"] in documents:
            continue
        staged = volume.under(staged_key(manifest, item))
        if not os.path.lexists(staged):
            continue  # moved by a killed apply (check_files found it in place)
        target = volume.under(item["path"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(staged, target)


def _make_link(volume: _Volume, link: dict[str, Any]) -> int:
    """One link of a store entry, model or forest (1 when made); never one that would point out of the volume."""
    if not link_stays_inside(link["path"], link["target"]):
        raise Refused(f"the manifest's link {link['path']} -> {link['target']} leaves the volume; refused")
    path = volume.under(link["path"])
    if os.path.islink(path) and os.readlink(path) == link["target"]:
        return 0
    if os.path.isdir(path) and not os.path.islink(path):
        raise Refused(f"{path} is a folder where the pushed generation has a link; refused")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.symlink(link["target"], temp)
    os.replace(temp, path)
    return 1


def _generations_dir(volume: _Volume, manifest: dict[str, Any]) -> str:
    relative = f"python-deps/py{manifest['python_version']}/.generations/{manifest['project']}"
    return volume.under(relative)


def _build_generation(volume: _Volume, manifest: dict[str, Any]) -> int:
    """The forest, from the manifest's links, under a temporary name; its record; the rename into place.

    Every folder and link is made relative to its folder's handle: one round trip each on a network volume.
    """
    folder = _generations_dir(volume, manifest)
    os.makedirs(folder, exist_ok=True)  # a first apply on this volume
    generations, name = volume.handle(folder), manifest["generation"]
    try:
        if stat.S_ISDIR(os.stat(name, dir_fd=generations, follow_symlinks=False).st_mode):
            return len(manifest["forest_links"])  # renamed into place by a killed apply: complete
    except FileNotFoundError:
        pass
    building = os.path.join(folder, TEMP_PREFIX + name)
    if os.path.lexists(building):
        _remove_tree(building)
    os.mkdir(TEMP_PREFIX + name, dir_fd=generations)
    prefix = os.path.relpath(os.path.join(folder, name), volume.root).replace(os.sep, "/") + "/"
    made = {building}
    for link in manifest["forest_links"]:
        if not link["path"].startswith(prefix) or not link_stays_inside(link["path"], link["target"]):
            raise Refused(f"the manifest's forest link {link['path']} is outside its generation or the volume; refused")
        # Same depth under the temporary name: the relative target stays right after the rename.
        parts = link["path"][len(prefix) :].split("/")
        parent = building
        for part in parts[:-1]:  # the forest's real folders (several entries share them)
            child = os.path.join(parent, part)
            if child not in made:
                os.mkdir(part, dir_fd=volume.handle(parent))
                made.add(child)
            parent = child
        os.symlink(link["target"], parts[-1], dir_fd=volume.handle(parent))
    record_file = f".metadata/projects/{manifest['project']}/generations/{name}.json"
    volume.write(record_file, _staged_bytes(volume, manifest, manifest["generation_record"]))
    os.rename(TEMP_PREFIX + name, name, src_dir_fd=generations, dst_dir_fd=generations)
    return len(manifest["forest_links"])


def _switch_link(volume: _Volume, manifest: dict[str, Any]) -> None:
    """Point ``pyX.Y/<project>`` at the generation with one atomic rename (a plain folder there is refused)."""
    link = volume.under(f"python-deps/py{manifest['python_version']}/{manifest['project']}")
    target = os.path.join(_generations_dir(volume, manifest), manifest["generation"])
    if os.path.islink(target) or not os.path.isdir(target):
        raise Unsafe(f"refused to switch {link} to {target}: not a generation folder")
    if os.path.isdir(link) and not os.path.islink(link):
        raise Refused(f"{link} is a plain folder (an older volume-cli's); run volume-cli sync apply on a pod")
    temp = os.path.join(os.path.dirname(link), f".{os.path.basename(link)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.symlink(os.path.relpath(target, os.path.dirname(link)), temp)
    try:
        os.replace(temp, link)
    except BaseException:
        _unlink(temp)
        raise


def _remove_tree(path: str) -> None:
    """Remove a folder without following a link inside it (a link is removed as a link)."""
    if os.path.islink(path):
        os.unlink(path)
        return
    shutil.rmtree(path)


def _finish(volume: _Volume, pending: list[dict[str, Any]]) -> None:
    """Drop the applied manifest and the older ones read with it, then their staged documents.

    A manifest pushed while we applied is not in ``pending`` and stays for the next apply.
    """
    folder = volume.under(pending_dir(pending[-1]["project"]))
    for manifest in pending:
        _unlink(_check_chain(os.path.join(folder, f"{manifest['generation']}.json"), volume.root))
    for manifest in pending:
        staged = os.path.join(folder, manifest["generation"])
        if os.path.isdir(staged) and not os.path.islink(staged):
            _remove_tree(staged)


# -- the lease lock, as volume_cli/store/lock.py writes it ----------------------------------
def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    text = _read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class VolumeLease:
    """The writer lock of volume_cli.store.lock.LeaseLock (same file, same record), for a worker.

    ``acquire`` waits at most ``wait_seconds`` and answers False when a live
    holder keeps the lock: a starting worker serves what is current instead.
    """

    def __init__(self, path: str, *, command: str, wait_seconds: float, lease_seconds: float = LEASE_SECONDS) -> None:
        self.path = path
        self.command = command
        self.wait_seconds = wait_seconds
        self.lease_seconds = lease_seconds
        self.owner_id = uuid.uuid4().hex
        self.started_at = _utc_text()
        try:
            namespace: str | None = os.readlink("/proc/self/ns/pid")
        except OSError:
            namespace = None
        self.boot_id = _read_text("/proc/sys/kernel/random/boot_id")
        self.namespace = namespace
        self.holder: dict[str, Any] | None = None  # who kept the lock when acquire gave up
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._renewer: threading.Thread | None = None

    def record(self) -> str:
        expires = datetime.now(timezone.utc) + timedelta(seconds=self.lease_seconds)
        return json.dumps(
            {
                "schema_version": 2,
                "owner_id": self.owner_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "command": self.command,
                "started_at": self.started_at,
                "lease_expires_at": expires.isoformat(),
                "boot_id": self.boot_id,
                "pid_namespace": self.namespace,
                "process_started": _start_ticks(os.getpid()),
                "lease_seconds": self.lease_seconds,
            }
        )

    def acquire(self) -> bool:
        os.makedirs(os.path.dirname(_check_chain(self.path, _volume_root(self.path))), exist_ok=True)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if self._try_create():
                self._renewer = threading.Thread(target=self._renew_loop, name="volume-cli-lease", daemon=True)
                self._renewer.start()
                return True
            holder = self._read_holder()
            if holder is None:
                continue  # vanished between our attempts
            if self._stale(holder):
                self._take_over(holder)
                continue
            if time.monotonic() >= deadline:
                self.holder = holder
                return False
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        holder = self._read_holder()
        if holder is not None and holder.get("owner_id") == self.owner_id:
            _unlink(self.path)

    def ensure_held(self) -> None:
        holder = self._read_holder()
        if self._lost.is_set() or holder is None or holder.get("owner_id") != self.owner_id:
            raise LeaseHeld(f"lost the lock {os.path.basename(self.path)} (taken over); nothing was committed")

    def _try_create(self) -> bool:
        # Written aside and linked into place, like LeaseLock: never an empty lock file.
        temp = f"{self.path}.new-{self.owner_id}"
        with open(temp, "w") as handle:
            handle.write(self.record())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, self.path)
        except FileExistsError:
            return False
        finally:
            _unlink(temp)
        return True

    def _read_holder(self) -> dict[str, Any] | None:
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(raw)
            if isinstance(holder, dict) and isinstance(holder.get("owner_id"), str):
                return holder
        except ValueError:
            pass
        # Unreadable (being written, or a newer format): honoured while it keeps being rewritten.
        return {"owner_id": "foreign:unreadable", "pid": -1, "lease_seconds": self.lease_seconds, "age": age}

    def _server_age(self) -> float | None:
        """Seconds since the lock file was rewritten, both ends on the file server's clock."""
        probe = os.path.join(os.path.dirname(self.path), f".{os.path.basename(self.path)}.clock-{self.owner_id}")
        try:
            with open(probe, "wb") as handle:
                handle.write(b"now")
            return os.stat(probe).st_mtime - os.stat(self.path).st_mtime
        except OSError:
            return None
        finally:
            _unlink(probe)

    def _stale(self, holder: dict[str, Any]) -> bool:
        """LeaseLock._stale_because: not renewed for a lease, or its process on this machine is gone."""
        lease = holder.get("lease_seconds")
        age = self._server_age() if lease is not None else None
        if isinstance(lease, (int, float)) and age is not None:
            if age > lease:
                return True
        elif "lease_expires_at" in holder:
            try:
                if datetime.now(timezone.utc) >= _parse_time(str(holder["lease_expires_at"])):
                    return True
            except ValueError:
                return False
        same_place = (
            holder.get("host") == socket.gethostname()
            and self.boot_id is not None
            and self.namespace is not None
            and (holder.get("boot_id"), holder.get("pid_namespace")) == (self.boot_id, self.namespace)
        )
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid <= 0 or not same_place:
            return False
        if not _alive(pid):
            return True
        started, recorded = _start_ticks(pid), holder.get("process_started")
        return recorded is not None and started is not None and started != recorded

    def _take_over(self, stale: dict[str, Any]) -> None:
        # Moved aside under our own name, then checked: a faster contender's live lock is put back.
        aside = f"{self.path}.stale-{self.owner_id}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            with open(aside, "rb") as handle:
                moved = json.loads(handle.read()).get("owner_id")
        except (OSError, ValueError, AttributeError):
            moved = "foreign:unreadable"
        if moved != stale.get("owner_id"):
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        _unlink(aside)

    def _renew_loop(self) -> None:
        while not self._stop.wait(max(0.05, self.lease_seconds / 3)):
            holder = self._read_holder()
            if holder is None or holder.get("owner_id") != self.owner_id:
                self._lost.set()
                return
            try:
                _atomic_write(self.path, self.record().encode())
            except OSError:
                pass  # a transient network error: the next tick tries again

    def describe(self) -> str:
        holder = self.holder or {}
        return f"{holder.get('command', 'another run')!r} (pid {holder.get('pid')} on {holder.get('host', '?')})"


def _volume_root(path: str) -> str:
    """The root above a ``.metadata/...`` path."""
    head = path
    while os.path.basename(head) != ".metadata":
        parent = os.path.dirname(head)
        if parent == head:
            raise Unsafe(f"{path} is not under a volume's .metadata folder")
        head = parent
    return os.path.dirname(head)


def _lock_file(root: str, name: str) -> str:
    return _under(root, f".metadata/locks/{name}.lock")


# -- a worker's records: the documents the CLI's models write ------------------------------
STATE_SCHEMA_VERSION = 2  # volume_cli.store.state.ProjectState.SCHEMA_VERSION


class WorkerRecords:
    """install-intent.json and state.json as the CLI writes them (volume_cli/deps/record.py), under the same locks."""

    def __init__(self, root: str, lease: VolumeLease, manifest: dict[str, Any]) -> None:
        self.root = root
        self.lease = lease
        self.project: str = manifest["project"]
        self.python_version: str = manifest["python_version"]
        self.tool_version: str = manifest.get("tool_version", "unknown")
        self.state_dir = f".metadata/projects/{self.project}"

    def ensure_held(self) -> None:
        self.lease.ensure_held()

    def check(self, record: dict[str, Any], models: dict[str, Any] | None) -> None:
        """The fields this writes from (the CLI validates the whole records with its models)."""
        fine = (
            all(isinstance(record.get(key), str) for key in ("generation", "path", "config_hash"))
            and isinstance(record.get("entries"), list)
            and all(isinstance(entry, dict) for entry in record["entries"])
            and (models is None or (isinstance(models, dict) and isinstance(models.get("model_keys"), list)))
        )
        if not fine:
            raise Refused(f"the pushed records of {self.project} are invalid; the current generation was kept")

    def _short_lock(self, name: str, *, lease_seconds: float) -> VolumeLease:
        lock = VolumeLease(
            _lock_file(self.root, name),
            command=f"worker apply {self.project}",
            wait_seconds=60,
            lease_seconds=lease_seconds,
        )
        if not lock.acquire():
            raise LeaseHeld(f"{name} stayed locked by {lock.describe()}; nothing was committed")
        return lock

    def clear_intent(self) -> None:
        path = _under(self.root, f"{self.state_dir}/install-intent.json")
        if not os.path.lexists(path):
            return
        lock = self._short_lock(STORE_LOCK_NAME, lease_seconds=LEASE_SECONDS)
        try:
            _unlink(path)
        finally:
            lock.release()

    def record_intent(self, *, generation: str, entries: list[str]) -> None:
        intent = {
            "schema_version": 1,
            "project": self.project,
            "python_version": self.python_version,
            "generation": generation,
            "entries": sorted(set(entries)),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "created_at": _utc_text(),
        }
        lock = self._short_lock(STORE_LOCK_NAME, lease_seconds=LEASE_SECONDS)
        try:
            _atomic_write(_under(self.root, f"{self.state_dir}/install-intent.json"), _document_bytes(intent))
        finally:
            lock.release()

    def repair_state(self) -> None:
        """A killed apply switched the link but did not record it: record it now (the link is the truth)."""
        linked = _current_generation(self.root, self.project, self.python_version)
        state = self._read_state()
        recorded = (state or {}).get("deps") or {}
        if linked is None or recorded.get("generation") == linked:
            return
        try:
            with open(_under(self.root, f"{self.state_dir}/generations/{linked}.json"), "rb") as handle:
                record = json.loads(handle.read())
        except (OSError, ValueError):
            return  # no record (a legacy folder): sync apply on a pod reconciles it
        self.record_switch(record, previous=recorded.get("generation"))

    def record_switch(self, record: dict[str, Any], *, previous: str | None) -> None:
        deps = {
            "generation": record["generation"],
            "previous_generation": previous if previous != record["generation"] else None,
            "generation_path": record["path"],
            "config_hash": record["config_hash"],
            "lock_hash": record.get("lock_hash"),
            "installed_at": _utc_text(),
            "package_count": len(record["entries"]),
            "size_bytes": sum(int(entry.get("size_bytes", 0)) for entry in record["entries"]),
            "new_bytes": 0,
            "tool_version": self.tool_version,
        }
        self._update_state(lambda state: {**state, "python_version": self.python_version, "deps": deps})

    def adopt_models(self, models: dict[str, Any] | None) -> None:
        if models is not None:
            self._update_state(lambda state: state if state.get("models") == models else {**state, "models": models})

    def _read_state(self) -> dict[str, Any] | None:
        path = _under(self.root, f"{self.state_dir}/state.json")
        try:
            with open(path, "rb") as handle:
                state = json.loads(handle.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise Refused(f"{path} is unreadable ({exc}); run volume-cli sync apply on a pod") from None
        if not isinstance(state, dict) or state.get("schema_version") != STATE_SCHEMA_VERSION:
            raise Refused(f"{path} has another format than this worker writes; run volume-cli sync apply on a pod")
        return state

    def _update_state(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """update_project_state: read, change, write under the project's short state lock."""
        lock = self._short_lock(f"{self.project}.state", lease_seconds=STATE_LEASE_SECONDS)
        try:
            current = self._read_state() or {
                "schema_version": STATE_SCHEMA_VERSION,
                "project": self.project,
                "python_version": self.python_version,
                "deps": None,
                "models": None,
                "updated_at": _utc_text(),
                "after_install": None,
            }
            changed = change(current)
            if changed is current:
                return
            changed = {**changed, "updated_at": _utc_text()}
            _atomic_write(_under(self.root, f"{self.state_dir}/state.json"), _document_bytes(changed))
        finally:
            lock.release()


def _document_bytes(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


# -- a worker's start -------------------------------------------------------------------------
def apply_on_start(root: str, project: str, python_version: str, environ: Any = None) -> str | None:
    """Apply a generation pushed for ``project`` and this Python, when one is pending; the line to log, or None.

    Never raises: a worker that cannot apply (refused manifest, lock held past
    the short wait, a read-only mount) serves the current generation.
    """
    environ = os.environ if environ is None else environ
    if environ.get(APPLY_ENV, "").strip() == "0":
        return None
    try:
        if not _pending_manifest_paths(root, project):
            return None  # the usual start: one listing
        wait = float(environ.get(WAIT_ENV) or DEFAULT_WAIT_SECONDS)
        lease = VolumeLease(_lock_file(root, project), command=f"worker apply {project}", wait_seconds=wait)
        if not lease.acquire():
            return (
                f"volume-cli: a pushed generation of {project} is pending but {lease.describe()} holds its lock; "
                "serving the current generation"
            )
        try:
            # Read under the lock: another worker (or a pod) may have applied it meanwhile.
            found = [decode(_read(path), source=path) for path in _pending_manifest_paths(root, project)]
            pending = _oldest_first([item for item in found if item.get("python_version") == python_version])
            if not pending:
                return None
            outcome = apply_newest(root, pending, WorkerRecords(root, lease, pending[-1]), deep=False, step=_quiet)
        finally:
            lease.release()
    except Exception as exc:  # never a worker without its packages for want of an update
        why = getattr(exc, "message", None) or repr(exc)
        return f"volume-cli: the pushed generation of {project} was not applied, serving the current one: {why}"
    if not outcome.switched:
        return None
    return f"volume-cli: applied the pushed generation {outcome.generation} of {project}"


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _quiet(_: str) -> None:
    return None


def log_apply_on_start(root: str, project: str, python_version: str) -> None:
    """``apply_on_start`` with its line on stderr (what the boot and ``activate()`` call)."""
    line = apply_on_start(root, project, python_version)
    if line:
        sys.stderr.write(line + "\n")
