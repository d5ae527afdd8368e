"""HuggingFace: the Hub's HTTP API in, a standard huggingface_hub cache out.

Protocol: ``GET {endpoint}/api/{models|datasets}/{repo}/revision/{rev}?blobs=true``
gives the commit and every file with its size, git blob id and (LFS) sha256;
``GET {endpoint}/[datasets/]{repo}/resolve/{commit}/{path}`` serves a file
(LFS files redirect to a CDN). hf-mirror.com and other mirrors speak the same.

Layout written (what huggingface_hub reads with HF_HUB_CACHE / HF_HOME)::

    hub/models--owner--name/blobs/<sha256 or git blob id>
    hub/models--owner--name/snapshots/<commit>/<path> -> ../../blobs/<id>   (relative)
    hub/models--owner--name/refs/<branch>             (the commit, for branch/tag revisions)

Partial downloads are ``blobs/<id>.incomplete``, the name huggingface_hub
itself resumes from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from volume_cli.config.model_sources import HuggingFaceModel, ModelSpec
from volume_cli.errors import ModelError
from volume_cli.models.endpoints import EndpointPool
from volume_cli.models.fsops import relative_symlink, remove_empty_parents, remove_path
from volume_cli.models.http import EndpointFailure, HttpClient
from volume_cli.models.manifest import ModelManifest, spec_hash
from volume_cli.models.sources import (
    FileJob,
    Listing,
    RemoteFile,
    SourceContext,
    check_repo_path,
    filter_paths,
    is_pinned,
)
from volume_cli.models.tokens import auth_headers, hf_token
from volume_cli.store.atomic import atomic_write_text


def repo_folder(hub_cache: Path, spec: HuggingFaceModel) -> Path:
    return hub_cache / f"{spec.repo_type}s--{spec.repo_id.replace('/', '--')}"


def _blob_id(entry: RemoteFile) -> str:
    blob = entry.sha256 or entry.git_sha1
    if not blob:
        raise ModelError(f"the hub listed {entry.path!r} without a checksum")
    return blob


def _as_hf(spec: ModelSpec) -> HuggingFaceModel:
    if not isinstance(spec, HuggingFaceModel):
        raise TypeError(f"not a HuggingFace model: {spec.key}")
    return spec


def _parse_sibling(sibling: Mapping[str, Any]) -> RemoteFile:
    path = check_repo_path(str(sibling.get("rfilename") or sibling.get("path") or ""))
    lfs = sibling.get("lfs") or {}
    sha256 = lfs.get("sha256") or lfs.get("oid")
    size = lfs.get("size", sibling.get("size"))
    git_sha1 = None if sha256 else (sibling.get("blobId") or sibling.get("oid"))
    return RemoteFile(path=path, size=int(size) if size is not None else None, sha256=sha256, git_sha1=git_sha1)


class HuggingFaceSource:
    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self.hub_cache = context.layout.hf_hub_cache

    def auth_token(self) -> str | None:
        return hf_token(self.context.env)

    def _api_base(self, endpoint: str, spec: HuggingFaceModel) -> str:
        return f"{endpoint}/api/{spec.repo_type}s/{spec.repo_id}"

    def list_remote(self, spec: ModelSpec, *, pool: EndpointPool, http: HttpClient) -> Listing:
        hf = _as_hf(spec)
        token = self.auth_token()

        def fetch(endpoint: str) -> tuple[str, list[RemoteFile]]:
            url = f"{self._api_base(endpoint, hf)}/revision/{quote(hf.revision, safe='')}"
            data, _ = http.get_json(
                url, headers=auth_headers("huggingface", endpoint, url, token), params={"blobs": "true"}
            )
            commit = str(data["sha"])
            files = [_parse_sibling(sibling) for sibling in data.get("siblings") or []]
            if any(entry.size is None or not (entry.sha256 or entry.git_sha1) for entry in files):
                files = self._list_tree(endpoint, hf, commit, http, token)  # a mirror without ?blobs support
            return commit, files

        (commit, files), endpoint = pool.call(fetch)
        return Listing(commit, filter_paths(files, hf.allow_patterns, hf.ignore_patterns), endpoint)

    def _list_tree(
        self, endpoint: str, spec: HuggingFaceModel, commit: str, http: HttpClient, token: str | None
    ) -> list[RemoteFile]:
        files: list[RemoteFile] = []
        url: str | None = f"{self._api_base(endpoint, spec)}/tree/{commit}?recursive=true"
        seen: set[str] = set()
        while url:
            if url in seen or len(seen) >= _MAX_TREE_PAGES:  # a hostile or broken mirror must not loop us
                raise EndpointFailure(
                    f"{url}: the file listing never ends (page {len(seen) + 1} repeats or is too many)"
                )
            seen.add(url)
            data, headers = http.get_json(url, headers=auth_headers("huggingface", endpoint, url, token))
            files += [_parse_sibling(entry) for entry in data if entry.get("type") == "file"]
            url = _next_link(headers.get("Link", ""))
        return files

    def prepare(self, spec: ModelSpec, previous: ModelManifest | None) -> None:
        return None

    def is_current(self, manifest: ModelManifest) -> bool:
        return True

    def file_jobs(self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None) -> list[FileJob]:
        hf = _as_hf(spec)
        blobs = repo_folder(self.hub_cache, hf) / "blobs"
        prefix = "datasets/" if hf.repo_type == "dataset" else ""
        commit = listing.resolved_commit or hf.revision
        damaged = set(previous.damaged) if previous else set()
        jobs = []
        for entry in listing.files:
            blob = blobs / _blob_id(entry)

            def url_for(endpoint: str, path: str = entry.path) -> str:
                return f"{endpoint}/{prefix}{hf.repo_id}/resolve/{commit}/{quote(path)}"

            jobs.append(
                FileJob(
                    file=entry,
                    final=blob,
                    partial=blob.with_name(blob.name + ".incomplete"),
                    url_for=url_for,
                    present=entry.path not in damaged and _has_size(blob, entry.size),
                )
            )
        return jobs

    def finalize(
        self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None, fetched_sha256: Mapping[str, str]
    ) -> ModelManifest:
        hf = _as_hf(spec)
        folder = repo_folder(self.hub_cache, hf)
        commit = listing.resolved_commit or hf.revision
        snapshot = folder / "snapshots" / commit
        for entry in listing.files:
            relative_symlink(snapshot / entry.path, folder / "blobs" / _blob_id(entry))
        if not is_pinned(hf.revision):
            atomic_write_text(folder / "refs" / hf.revision, commit)  # written last: readers switch commits here
        if previous is not None and previous.resolved_commit and previous.resolved_commit != commit:
            remove_path(folder / "snapshots" / previous.resolved_commit)
            prune_unreferenced_blobs(folder)
        elif previous is not None:
            wanted = {entry.path for entry in listing.files}
            dropped = [entry.path for entry in previous.files if entry.path not in wanted]
            for path in dropped:  # narrower patterns: the snapshot should show only what is wanted
                (snapshot / path).unlink(missing_ok=True)
                remove_empty_parents((snapshot / path).parent, snapshot)
            if dropped:
                prune_unreferenced_blobs(folder)
        layout = self.context.layout
        return ModelManifest(
            key=hf.key,
            source="huggingface",
            model_id=hf.repo_id,
            repo_type=hf.repo_type,
            requested_revision=hf.revision,
            resolved_commit=commit,
            spec_hash=spec_hash(hf),
            target=layout.relative(folder),
            files_root=layout.relative(snapshot),
            files=[entry.as_manifest() for entry in listing.files],
            total_size=sum(entry.size or 0 for entry in listing.files),
            endpoint=listing.endpoint,
            downloaded_at=self.context.now,
        )


def _has_size(path: Path, size: int | None) -> bool:
    try:
        return size is not None and os.stat(path).st_size == size
    except OSError:
        return False


_MAX_TREE_PAGES = 10_000  # 1000 entries a page on the hub: ten million files


def _next_link(header: str) -> str | None:
    for part in header.split(","):
        if 'rel="next"' in part and "<" in part and ">" in part:
            return part[part.index("<") + 1 : part.index(">")]
    return None


def prune_unreferenced_blobs(folder: Path) -> None:
    """Drop blobs no snapshot links to any more (an older revision we replaced)."""
    referenced: set[str] = set()
    for current, _dirs, files in os.walk(folder / "snapshots"):
        for name in files:
            link = os.path.join(current, name)
            if os.path.islink(link):
                referenced.add(os.path.basename(os.readlink(link)))
    try:
        entries = list(os.scandir(folder / "blobs"))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name not in referenced and not entry.name.endswith(".incomplete"):
            Path(entry.path).unlink(missing_ok=True)
