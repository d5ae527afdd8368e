"""``sync push``: upload what each volume lacks of a generation, then its manifest as the commit point.

The plan asks each volume's own small records, never a listing of the
bucket: its state.json (already applied?), the pending manifest (already
pushed?), each store entry's marker (entry complete?), and one HEAD per
other file (size plus the sha256 we stored in its metadata). Uploads go in
an order that keeps every marker honest: entry files, then entry markers,
then the staged documents, then the manifest. A push killed anywhere leaves
no manifest (nothing to apply) or a complete one, and the rerun uploads only
what is missing (see ``journal.py``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from volume_cli.deps.documents import ENTRY_MANIFEST
from volume_cli.deps.faults import crash_point
from volume_cli.errors import StateError
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import ModelManifest
from volume_cli.progress import Progress
from volume_cli.remote.config import Remote
from volume_cli.remote.objects import RemoteBucket
from volume_cli.remote.s3 import make_client
from volume_cli.store.documents import parse_document
from volume_cli.store.state import ProjectState
from volume_cli.sync.digests import DigestCache
from volume_cli.sync.journal import MultipartRecord, PushJournal, journal_path
from volume_cli.sync.manifest import (
    GenerationManifest,
    SyncedFile,
    build_manifest,
    encode_manifest,
    entry_of,
    manifest_key,
    object_key,
)
from volume_cli.sync.worker_files import seed_worker_files

MiB = 1 << 20


@dataclass(frozen=True)
class TransferSettings:
    multipart_threshold: int = 256 * MiB  # RunPod refuses a single PUT of 500 MB or more
    part_size: int = 64 * MiB  # S3's minimum is 5 MiB (except the last part); RunPod's maximum 500 MB
    workers: int = 8
    timeout: float = 60.0
    attempts: int = 5
    backoff: float = 0.5


@dataclass(frozen=True)
class VolumePlan:
    """What one volume lacks of the generation."""

    remote: str
    bucket: str
    status: str  # "applied", "pushed" (pending there already) or "missing"
    uploads: tuple[SyncedFile, ...]
    missing_entries: tuple[str, ...]
    skipped_files: int
    upload_bytes: int
    requests: int


@dataclass(frozen=True)
class VolumePush:
    plan: VolumePlan
    files_uploaded: int = 0
    bytes_uploaded: int = 0
    parts_uploaded: int = 0
    parts_reused: int = 0
    requests: int = 0  # every request of the plan and the upload, retries included
    seconds: float = 0.0


@dataclass(frozen=True)
class PushResult:
    project: str
    generation: str
    dry_run: bool
    manifest_files: int
    manifest_bytes: int
    volumes: tuple[VolumePush, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for volume, push in zip(data["volumes"], self.volumes, strict=True):
            volume["plan"]["uploads"] = [item.path for item in push.plan.uploads]
        return data


@dataclass
class _Counters:
    files: int = 0
    bytes: int = 0
    parts: int = 0
    parts_reused: int = 0
    lock: Any = field(default=None)


def push(
    *,
    layout: VolumeLayout,
    project: str,
    python_version: str,
    remotes: Sequence[Remote],
    environ: Mapping[str, str],
    journal_dir: Path,
    dry_run: bool,
    progress: Progress,
    settings: TransferSettings | None = None,
) -> PushResult:
    """Plan, then (unless ``dry_run``) upload to each remote in turn; the manifest goes last on each."""
    settings = settings or TransferSettings()
    progress.step(f"hashing the files of {project}'s current generation")
    digests = DigestCache(journal_dir, layout.root, project)
    manifest = build_manifest(layout, project, python_version, digest=digests.sha256)
    digests.save()
    results = []
    for remote in remotes:
        started = time.monotonic()
        client = make_client(remote, environ=environ, timeout=settings.timeout)
        bucket = RemoteBucket(remote, client, attempts=settings.attempts, backoff=settings.backoff)
        journal = PushJournal(journal_path(journal_dir, remote), remote)
        progress.step(f"planning {remote.name}")
        plan = plan_volume(bucket, manifest, journal, workers=settings.workers)
        if dry_run or plan.status != "missing":
            results.append(VolumePush(plan=plan, requests=bucket.requests, seconds=time.monotonic() - started))
            continue
        counters = _upload_all(layout, bucket, manifest, plan, journal, settings, progress)
        results.append(
            VolumePush(
                plan=plan,
                files_uploaded=counters.files,
                bytes_uploaded=counters.bytes,
                parts_uploaded=counters.parts,
                parts_reused=counters.parts_reused,
                requests=bucket.requests,
                seconds=time.monotonic() - started,
            )
        )
    return PushResult(
        project=project,
        generation=manifest.generation,
        dry_run=dry_run,
        manifest_files=len(manifest.files),
        manifest_bytes=manifest.total_bytes,
        volumes=tuple(results),
    )


def remote_state(bucket: RemoteBucket, project: str) -> ProjectState | None:
    """The volume's state.json of ``project`` (None when absent or unreadable: then nothing counts as applied)."""
    key = f".metadata/projects/{project}/state.json"
    raw = bucket.get(key)
    if raw is None:
        return None
    try:
        return parse_document(raw, ProjectState, source=Path(key))
    except StateError:
        return None


def plan_volume(
    bucket: RemoteBucket, manifest: GenerationManifest, journal: PushJournal, *, workers: int
) -> VolumePlan:
    def plan(status: str, uploads: list[SyncedFile], missing: Sequence[str] = ()) -> VolumePlan:
        return VolumePlan(
            remote=bucket.remote.name,
            bucket=bucket.remote.bucket,
            status=status,
            uploads=tuple(uploads),
            missing_entries=tuple(missing),
            skipped_files=len(manifest.files) - len(uploads),
            upload_bytes=sum(item.size for item in uploads),
            requests=bucket.requests,
        )

    state = remote_state(bucket, manifest.project)
    if state is not None and state.deps is not None and state.deps.generation == manifest.generation:
        return plan("applied", [])
    pushed = bucket.head(manifest_key(manifest.project, manifest.generation))
    if pushed is not None and pushed.size == len(encode_manifest(manifest)):
        return plan("pushed", [])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        markers = list(pool.map(lambda entry: bucket.head(_marker(entry)), manifest.entries))
        complete = {entry for entry, found in zip(manifest.entries, markers, strict=True) if found is not None}
        placed = _models_in_place(bucket, manifest)
        needed = list(pool.map(lambda item: _needs_upload(bucket, manifest, item, journal, complete), manifest.files))
    documents = manifest.documents
    uploads = [
        item
        for item, need in zip(manifest.files, needed, strict=True)
        if need and (item.path in documents or not item.path.startswith(placed))
    ]
    return plan("missing", uploads, [entry for entry in manifest.entries if entry not in complete])


def _models_in_place(bucket: RemoteBucket, manifest: GenerationManifest) -> tuple[str, ...]:
    """Folders of the models whose manifest on the volume is ours, byte for byte: their files are all there.

    A model manifest is written only once every file of the model is verified and in place (by a download
    there, or by an apply), so one GET per model spares a HEAD per file and a re-upload of refs and of
    URL or local models' files, which travel staged.
    """
    sizes = {item.path: item for item in manifest.files}
    prefixes: list[str] = []
    for path in manifest.model_manifests:
        raw = bucket.get(path)
        if raw is None or hashlib.sha256(raw).hexdigest() != sizes[path].sha256:
            continue
        try:
            model = parse_document(raw, ModelManifest, source=Path(path))
        except StateError:
            continue
        prefixes += [f"{folder.rstrip('/')}/" for folder in [model.target, *model.links]]
    return tuple(prefixes)


def _marker(entry: str) -> str:
    return f"python-deps/.store/{entry}/{ENTRY_MANIFEST}"


def _needs_upload(
    bucket: RemoteBucket, manifest: GenerationManifest, item: SyncedFile, journal: PushJournal, complete: set[str]
) -> bool:
    entry = entry_of(item.path)
    if entry is not None and entry in complete:
        return False
    key = object_key(manifest, item)
    journaled = journal.has(key, item.sha256)
    if entry is not None and not journaled and not journal.resuming:
        return True  # no push from here was cut short: a fresh volume's entries cost no HEADs
    found = bucket.head(key)
    if found is None or found.size != item.size:
        return True
    # rclone keeps metadata in memory only: without it, trust our journal or a content-addressed name
    return not (found.metadata.get("sha256") == item.sha256 or journaled or key.rsplit("/", 1)[-1] == item.sha256)


def _upload_all(
    layout: VolumeLayout,
    bucket: RemoteBucket,
    manifest: GenerationManifest,
    plan: VolumePlan,
    journal: PushJournal,
    settings: TransferSettings,
    progress: Progress,
) -> _Counters:
    import threading

    counters = _Counters(lock=threading.Lock())
    marker = f"/{ENTRY_MANIFEST}"
    documents = manifest.documents
    content = [item for item in plan.uploads if item.path not in documents and not item.path.endswith(marker)]
    large = settings.multipart_threshold
    phases = [
        [item for item in content if item.size < large],
        [item for item in content if item.size >= large],  # after the small ones: a kill mid-part costs little
        [item for item in plan.uploads if item.path.endswith(marker)],
        [item for item in plan.uploads if item.path in documents],
    ]
    journal.begin(manifest.generation)
    task = progress.task(f"uploading to {bucket.remote.name}", total=plan.upload_bytes, unit="bytes")

    def one(item: SyncedFile) -> None:
        _upload_file(layout, bucket, manifest, item, journal, settings, counters)
        task.advance(item.size)

    try:
        with ThreadPoolExecutor(max_workers=settings.workers) as pool:
            for phase in phases:
                list(pool.map(one, phase))  # a phase ends before the next starts: markers follow their files
        seed_worker_files(bucket, layout, manifest.project, manifest.python_version)
        crash_point("sync-before-manifest")
        # Last: the commit point. Its presence says every file above is there.
        bucket.put(manifest_key(manifest.project, manifest.generation), encode_manifest(manifest), {})
        journal.finished()
    finally:
        journal.save()
        task.finish()
    return counters


def _metadata(item: SyncedFile) -> dict[str, str]:
    return {"sha256": item.sha256, "mode": f"{item.mode:o}"}


def _upload_file(
    layout: VolumeLayout,
    bucket: RemoteBucket,
    manifest: GenerationManifest,
    item: SyncedFile,
    journal: PushJournal,
    settings: TransferSettings,
    counters: _Counters,
) -> None:
    key = object_key(manifest, item)
    path = layout.absolute(item.path)
    if item.size >= settings.multipart_threshold:
        parts, reused = _multipart(bucket, key, path, item, journal, settings.part_size)
    else:
        bucket.put(key, path.read_bytes(), _metadata(item))
        parts, reused = 0, 0
    journal.uploaded(key, item.sha256)
    with counters.lock:
        counters.files += 1
        counters.bytes += item.size
        counters.parts += parts
        counters.parts_reused += reused


def _multipart(
    bucket: RemoteBucket, key: str, path: Path, item: SyncedFile, journal: PushJournal, part_size: int
) -> tuple[int, int]:
    """Upload ``path`` in parts, continuing a recorded upload; returns (parts uploaded, parts reused)."""
    upload_id = journal.multipart(key, item.sha256, part_size)
    done = bucket.uploaded_parts(key, upload_id) if upload_id else None
    if upload_id is None or done is None:
        upload_id = bucket.start_multipart(key, _metadata(item))
        journal.started(key, MultipartRecord(upload_id=upload_id, sha256=item.sha256, part_size=part_size))
        done = {}
    etags: dict[int, str] = {}
    uploaded = reused = 0
    with path.open("rb") as handle:
        for number, offset in enumerate(range(0, max(item.size, 1), part_size), start=1):
            handle.seek(offset)
            body = handle.read(part_size)
            landed = done.get(number)
            # A part counts only if its bytes are ours: S3's part ETag is the part's md5.
            if landed is not None and landed[0].strip('"') == hashlib.md5(body).hexdigest() and landed[1] == len(body):
                etags[number] = landed[0]
                reused += 1
                continue
            etags[number] = bucket.upload_part(key, upload_id, number, body)
            uploaded += 1
            crash_point("sync-part-uploaded")
    bucket.complete_multipart(key, upload_id, etags, size=item.size, sha256=item.sha256)
    return uploaded, reused
