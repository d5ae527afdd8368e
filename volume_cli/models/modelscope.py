"""ModelScope: the legacy v1 HTTP API in, the cache layout the worker's release reads out.

Protocol (what every modelscope release since 1.x calls):
``GET {endpoint}/api/v1/models/{owner}/{name}/repo/files?Revision=..&Recursive=True``
lists files with Size, Sha256 and their commit (``Revision``);
``GET {endpoint}/api/v1/models/{owner}/{name}/repo?Revision=..&FilePath=..`` serves one.
The listing is capped at 3000 entries per request, so a capped answer is
walked folder by folder. See ``mslayout`` for where the files go.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from volume_cli.config.model_sources import ModelScopeModel, ModelSpec
from volume_cli.errors import ModelError
from volume_cli.models import fsops
from volume_cli.models.endpoints import EndpointPool
from volume_cli.models.fsops import relative_symlink, remove_empty_parents, remove_path, staging_dir
from volume_cli.models.http import HttpClient
from volume_cli.models.identifiers import check_revision, check_sha256, check_size, check_subfolder
from volume_cli.models.manifest import ModelManifest, safe_key, spec_hash
from volume_cli.models.mslayout import MsLayout, plan_layout
from volume_cli.models.sources import FileJob, Listing, RemoteFile, SourceContext, check_repo_path, filter_paths
from volume_cli.models.tokens import auth_headers, modelscope_token
from volume_cli.store.atomic import atomic_write_bytes, atomic_write_text

_LISTING_CAP = 3000


def _as_ms(spec: ModelSpec) -> ModelScopeModel:
    if not isinstance(spec, ModelScopeModel):
        raise TypeError(f"not a ModelScope model: {spec.key}")
    return spec


def _entries(body: Any, url: str) -> list[Mapping[str, Any]]:
    if not isinstance(body, dict) or body.get("Code") not in (200, None) or body.get("Success") is False:
        message = body.get("Message") if isinstance(body, dict) else "unexpected answer"
        raise ModelError(f"ModelScope refused the listing {url}: {message}")
    data = body.get("Data")
    files = data.get("Files") if isinstance(data, dict) else data
    return [entry for entry in files or [] if isinstance(entry, dict)]


class ModelScopeSource:
    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self.cache = context.layout.modelscope_cache
        self._token: str | None = None
        self._token_read = False

    def auth_token(self) -> str | None:
        if not self._token_read:
            self._token = modelscope_token(self.context.env)
            self._token_read = True
        return self._token

    def layout_for(self, model_id: str, revision: str) -> MsLayout:
        return plan_layout(self.cache, model_id, revision, self.context.consumer_modelscope_version)

    # -- listing ----------------------------------------------------------------
    def list_remote(self, spec: ModelSpec, *, pool: EndpointPool, http: HttpClient) -> Listing:
        ms = _as_ms(spec)
        token = self.auth_token()

        def fetch(endpoint: str) -> list[Mapping[str, Any]]:
            url = f"{endpoint}/api/v1/models/{ms.model_id}/repo/files"

            def page(root: str | None, recursive: bool) -> list[Mapping[str, Any]]:
                params = {"Revision": ms.revision, "Recursive": str(recursive)}
                if root:
                    params["Root"] = root
                body, _ = http.get_json(url, headers=auth_headers("modelscope", endpoint, url, token), params=params)
                return _entries(body, url)

            def walk(root: str | None) -> list[Mapping[str, Any]]:
                entries = page(root, True)
                if len(entries) < _LISTING_CAP:
                    return entries
                found = []  # capped: list this folder shallowly and walk its sub-folders
                for entry in page(root, False):
                    if entry.get("Type") == "tree":
                        found += walk(check_subfolder(root, entry.get("Path")))
                    else:
                        found.append(entry)
                return found

            return walk(None)

        entries, endpoint = pool.call(fetch)
        files = {
            str(entry.get("Path")): RemoteFile(
                path=check_repo_path(entry.get("Path")),
                size=check_size(entry.get("Size") or 0),
                sha256=check_sha256(entry["Sha256"]) if entry.get("Sha256") else None,
                revision=check_revision(entry["Revision"]) if entry.get("Revision") else None,
            )
            for entry in entries
            if entry.get("Type") != "tree"
        }
        revisions = {entry.revision for entry in files.values() if entry.revision}
        commit = revisions.pop() if len(revisions) == 1 else None
        kept = filter_paths(list(files.values()), ms.allow_patterns, ms.ignore_patterns)
        return Listing(commit, kept, endpoint)

    # -- placing files ------------------------------------------------------------
    def is_current(self, manifest: ModelManifest) -> bool:
        desired = self.layout_for(manifest.model_id, manifest.requested_revision or "master")
        layout = self.context.layout
        if manifest.layout_variant != desired.variant or manifest.target != layout.relative(desired.physical):
            return False
        return all(os.path.lexists(link) for link in desired.links)

    def prepare(self, spec: ModelSpec, previous: ModelManifest | None) -> None:
        """Move the real copy when the consumer's release reads another layout (no download needed)."""
        ms = _as_ms(spec)
        if previous is None:
            return
        desired = self.layout_for(ms.model_id, ms.revision)
        old = self.context.layout.absolute(previous.target)
        if old == desired.physical or not old.is_dir() or old.is_symlink() or not fsops.is_inside(old, self.cache):
            return
        remove_path(desired.physical)  # our old link to the copy, or a stale copy a client left there
        desired.physical.parent.mkdir(parents=True, exist_ok=True)
        os.rename(old, desired.physical)

    def _current_root(self, previous: ModelManifest | None, physical: Path) -> Path:
        """Where the files are now: the previous copy until ``prepare`` has moved it."""
        if previous is not None:
            old = self.context.layout.absolute(previous.target)
            if old.is_dir() and not old.is_symlink():
                return old
        return physical

    def _partial(self, key: str, path: str) -> Path:
        name = hashlib.sha1(path.encode()).hexdigest()[:20] + ".part"
        return staging_dir(self.context.layout) / safe_key(key) / name

    def file_jobs(self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None) -> list[FileJob]:
        ms = _as_ms(spec)
        physical = self.layout_for(ms.model_id, ms.revision).physical
        current_root = self._current_root(previous, physical)
        known = {entry.path: entry for entry in previous.files} if previous else {}
        damaged = set(previous.damaged) if previous else set()
        jobs = []
        checked: set[Path] = set()
        for entry in listing.files:
            final = fsops.check_inside(physical / check_repo_path(entry.path), self.cache, known=checked)
            before = known.get(entry.path)
            unchanged = before is not None and before.sha256 == entry.sha256 and entry.path not in damaged

            def url_for(endpoint: str, path: str = entry.path) -> str:
                return (
                    f"{endpoint}/api/v1/models/{ms.model_id}/repo"
                    f"?Revision={quote(ms.revision, safe='')}&FilePath={quote(path, safe='')}"
                )

            jobs.append(
                FileJob(
                    file=entry,
                    final=final,
                    partial=fsops.check_inside(
                        self._partial(ms.key, entry.path), self.context.layout.models_dir, known=checked
                    ),
                    url_for=url_for,
                    present=unchanged and _has_size(current_root / entry.path, entry.size),
                )
            )
        return jobs

    def finalize(
        self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None, fetched_sha256: Mapping[str, str]
    ) -> ModelManifest:
        ms = _as_ms(spec)
        desired = self.layout_for(ms.model_id, ms.revision)
        physical = desired.physical
        wanted = {entry.path for entry in listing.files}
        for entry in previous.files if previous else []:
            if entry.path not in wanted:
                stale = physical / entry.path
                if not fsops.is_inside(stale, physical) or ".." in entry.path.split("/"):
                    continue  # an old manifest naming a path outside is never obeyed
                stale.unlink(missing_ok=True)
                remove_empty_parents(stale.parent, physical)
        self._write_client_index(ms, listing, physical)
        layout = self.context.layout
        for link in desired.links:
            relative_symlink(fsops.check_inside(link, self.cache), physical)
        for old_link in previous.links if previous else []:
            path = layout.absolute(old_link)
            if path not in desired.links and path.is_symlink() and fsops.is_inside(path, self.cache):
                path.unlink()
        return ModelManifest(
            key=ms.key,
            source="modelscope",
            model_id=ms.model_id,
            repo_type="model",
            requested_revision=ms.revision,
            resolved_commit=listing.resolved_commit,
            spec_hash=spec_hash(ms),
            target=layout.relative(physical),
            files_root=layout.relative(physical),
            links=[layout.relative(link) for link in desired.links],
            layout_variant=desired.variant,
            files=[entry.as_manifest() for entry in listing.files],
            total_size=sum(entry.size or 0 for entry in listing.files),
            endpoint=listing.endpoint,
            downloaded_at=self.context.now,
        )

    def _write_client_index(self, spec: ModelScopeModel, listing: Listing, physical: Path) -> None:
        """The files releases before 1.38 read to accept a cached folder (``local_files_only``)."""
        fallback = listing.resolved_commit or spec.revision
        index = [{"Path": entry.path, "Revision": entry.revision or fallback} for entry in listing.files]
        atomic_write_bytes(physical / ".msc", pickle.dumps(index, protocol=4))
        owner, name = spec.model_id.split("/", 1)
        meta = {"id": f"{owner}/{name.replace('.', '___')}"}  # what the clients write themselves
        atomic_write_bytes(physical / ".mdl", pickle.dumps(meta, protocol=4))
        created = int(self.context.now.timestamp())
        atomic_write_text(physical / ".mv", f"Revision:{spec.revision},CreatedAt:{created}")


def _has_size(path: Path, size: int | None) -> bool:
    try:
        return size is not None and os.stat(path).st_size == size
    except OSError:
        return False
