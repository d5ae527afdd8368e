"""``sync status``: per volume, the generation applied, the ones pending, and what differs from here.

Read from each volume's own small records (state.json, one listing of the
pending folder with a delimiter, one generation record), never a listing
of the bucket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from volume_cli.deps.documents import GenerationRecord, read_generation_record
from volume_cli.deps.forest import current_generation
from volume_cli.errors import StateError
from volume_cli.layout import VolumeLayout
from volume_cli.pushed_apply import pending_dir
from volume_cli.remote.config import Remote
from volume_cli.remote.objects import RemoteBucket
from volume_cli.remote.s3 import make_client
from volume_cli.store.documents import parse_document
from volume_cli.sync.push import remote_state


@dataclass(frozen=True)
class VolumeStatus:
    remote: str
    bucket: str
    applied: str | None
    previous: str | None
    pending: tuple[str, ...]
    in_step: bool  # the applied generation is the one installed here
    entries_missing: tuple[str, ...]  # store entries of the local generation the applied one lacks
    entries_extra: tuple[str, ...]  # store entries the applied generation has and the local one not
    requests: int


@dataclass(frozen=True)
class SyncStatus:
    project: str
    local_generation: str | None
    volumes: tuple[VolumeStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sync_status(
    *,
    layout: VolumeLayout | None,
    project: str,
    python_version: str | None,
    remotes: Sequence[Remote],
    environ: Mapping[str, str],
    timeout: float,
) -> SyncStatus:
    local = None
    local_record: GenerationRecord | None = None
    if layout is not None and python_version is not None:
        local = current_generation(layout, project, python_version)
        local_record = read_generation_record(layout, project, local) if local else None
    volumes = []
    for remote in remotes:
        bucket = RemoteBucket(remote, make_client(remote, environ=environ, timeout=timeout))
        volumes.append(_volume_status(bucket, project, local_record))
    return SyncStatus(project=project, local_generation=local, volumes=tuple(volumes))


def _volume_status(bucket: RemoteBucket, project: str, local: GenerationRecord | None) -> VolumeStatus:
    state = remote_state(bucket, project)
    deps = state.deps if state is not None else None
    applied = deps.generation if deps is not None else None
    keys, _ = bucket.list_folder(f"{pending_dir(project)}/")
    pending = sorted(key.rsplit("/", 1)[-1].removesuffix(".json") for key in keys if key.endswith(".json"))
    mine = {entry.entry for entry in local.entries} if local is not None else set()
    theirs = set(mine)
    if applied is not None and local is not None and applied != local.generation:
        theirs = {entry.entry for entry in _remote_record(bucket, project, applied).entries}
    elif applied is None:
        theirs = set()
    return VolumeStatus(
        remote=bucket.remote.name,
        bucket=bucket.remote.bucket,
        applied=applied,
        previous=deps.previous_generation if deps is not None else None,
        pending=tuple(pending),
        in_step=local is not None and applied == local.generation,
        entries_missing=tuple(sorted(mine - theirs)),
        entries_extra=tuple(sorted(theirs - mine)) if local is not None else (),
        requests=bucket.requests,
    )


def _remote_record(bucket: RemoteBucket, project: str, generation: str) -> GenerationRecord:
    key = f".metadata/projects/{project}/generations/{generation}.json"
    raw = bucket.get(key)
    empty = GenerationRecord(
        generation=generation,
        project=project,
        python_version="",
        path="",
        config_hash="",
        lock_hash="",
        tool_version="",
        entries=[],
    )
    if raw is None:
        return empty
    try:
        return parse_document(raw, GenerationRecord, source=Path(key))
    except StateError:
        return empty
