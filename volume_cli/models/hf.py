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
from volume_cli.errors import ModelError, UnsafeIdentifierError
from volume_cli.fileops import atomic_write_text, is_file_of_size, relative_symlink, remove_empty_parents, remove_tree
from volume_cli.fsguard import check_inside
from volume_cli.layout import VolumeLayout
from volume_cli.models.endpoints import EndpointPool
from volume_cli.models.http import EndpointFailure, HttpClient
from volume_cli.models.identifiers import (
    HINT,
    check_blob_id,
    check_commit,
    check_revision,
    check_sha256,
    check_size,
    refuse,
)
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

# 1000 entries a page on the Hub: far beyond the largest repositories.
_MAX_TREE_PAGES = 10_000


def refs_name_commit(layout: VolumeLayout, manifest: ModelManifest) -> bool:
    """``refs/<revision>`` names the manifest's commit (one small read; a pinned commit has no ref)."""
    revision = manifest.requested_revision or "main"
    if is_pinned(revision) or manifest.resolved_commit is None:
        return True
    refs = layout.absolute(manifest.target) / "refs" / revision
    try:
        return refs.read_text(encoding="utf-8").strip() == manifest.resolved_commit
    except (OSError, UnicodeDecodeError):
        return False


def repo_folder(hub_cache: Path, spec: HuggingFaceModel) -> Path:
    return hub_cache / f"{spec.repo_type}s--{spec.repo_id.replace('/', '--')}"


def _blob_id(entry: RemoteFile) -> str:
    blob = entry.sha256 or entry.git_sha1
    if not blob:
        raise ModelError(f"the hub listed {entry.path!r} without a checksum")
    return check_blob_id(blob)  # also what a manifest on the volume says: checked again before use


def _as_hf(spec: ModelSpec) -> HuggingFaceModel:
    if not isinstance(spec, HuggingFaceModel):
        raise TypeError(f"not a HuggingFace model: {spec.key}")
    return spec


def _parse_sibling(sibling: Any) -> RemoteFile:
    """One listed file, every field checked before it can become a path (a mirror is not trusted)."""
    if not isinstance(sibling, Mapping):
        raise refuse("listing entry", sibling)
    path = check_repo_path(sibling.get("rfilename") or sibling.get("path") or "")
    lfs = sibling.get("lfs") or {}
    if not isinstance(lfs, Mapping):
        raise refuse("lfs entry", lfs)
    raw_sha256 = lfs.get("sha256") or lfs.get("oid")
    sha256 = (
        check_sha256(raw_sha256.removeprefix("sha256:") if isinstance(raw_sha256, str) else raw_sha256)
        if raw_sha256
        else None
    )
    size = lfs.get("size", sibling.get("size"))
    raw_blob = None if sha256 else (sibling.get("blobId") or sibling.get("oid"))
    git_sha1 = check_blob_id(raw_blob) if raw_blob else None
    return RemoteFile(path=path, size=check_size(size) if size is not None else None, sha256=sha256, git_sha1=git_sha1)


def _parse_info(data: Any, hf: HuggingFaceModel) -> tuple[str, list[RemoteFile]]:
    if not isinstance(data, Mapping) or not isinstance(data.get("siblings") or [], list):
        raise refuse("repository info", data)
    commit = check_commit(data.get("sha"))
    if is_pinned(hf.revision) and commit != hf.revision:
        # A mirror answering another commit for a pinned one would put other bytes under that name.
        raise UnsafeIdentifierError(
            f"refused commit {commit} from the hub: {hf.key} is pinned to {hf.revision}", hint=HINT
        )
    return commit, [_parse_sibling(sibling) for sibling in data.get("siblings") or []]


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
            commit, files = _parse_info(data, hf)
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
            if not isinstance(data, list):
                raise refuse("tree listing", data)
            files += [
                _parse_sibling(entry) for entry in data if isinstance(entry, Mapping) and entry.get("type") == "file"
            ]
            url = _next_link(headers.get("Link", ""))
        return files

    def prepare(self, spec: ModelSpec, previous: ModelManifest | None) -> None:
        return None

    def file_jobs(self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None) -> list[FileJob]:
        hf = _as_hf(spec)
        blobs = repo_folder(self.hub_cache, hf) / "blobs"
        prefix = "datasets/" if hf.repo_type == "dataset" else ""
        commit = check_commit(listing.resolved_commit or hf.revision)
        damaged = set(previous.damaged) if previous else set()
        jobs = []
        known: set[Path] = set()
        for entry in listing.files:
            blob = check_inside(blobs / _blob_id(entry), self.hub_cache, known=known)
            partial = check_inside(blob.with_name(blob.name + ".incomplete"), self.hub_cache, known=known)

            def url_for(endpoint: str, path: str = entry.path) -> str:
                return f"{endpoint}/{prefix}{hf.repo_id}/resolve/{commit}/{quote(path)}"

            jobs.append(
                FileJob(
                    file=entry,
                    final=blob,
                    partial=partial,
                    url_for=url_for,
                    present=entry.path not in damaged and is_file_of_size(blob, entry.size),
                )
            )
        return jobs

    def finalize(
        self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None, fetched_sha256: Mapping[str, str]
    ) -> ModelManifest:
        hf = _as_hf(spec)
        folder = repo_folder(self.hub_cache, hf)
        commit = check_commit(listing.resolved_commit or hf.revision)
        snapshot = folder / "snapshots" / commit
        known: set[Path] = set()
        for entry in listing.files:
            link = check_inside(snapshot / check_repo_path(entry.path), self.hub_cache, known=known)
            relative_symlink(link, folder / "blobs" / _blob_id(entry))
        if not is_pinned(hf.revision):  # refused before the manifest names the new commit
            check_inside(folder / "refs" / check_revision(hf.revision), self.hub_cache)
        return self._manifest(hf, folder, snapshot, commit, listing)

    def publish(self, spec: ModelSpec, manifest: ModelManifest, previous: ModelManifest | None) -> None:
        """Switch ``refs`` to the new commit, then drop snapshots older than the one it replaced.

        The replaced snapshot stays until the next update, for a reader that
        resolved ``refs`` a moment before the switch and is still loading.
        """
        hf = _as_hf(spec)
        folder = repo_folder(self.hub_cache, hf)
        commit = check_commit(manifest.resolved_commit or hf.revision)
        if not is_pinned(hf.revision):
            refs = check_inside(folder / "refs" / check_revision(hf.revision), self.hub_cache)
            atomic_write_text(refs, commit)  # readers switch commits here
        if previous is not None and previous.resolved_commit == commit:
            self._drop_paths(folder, folder / "snapshots" / commit, previous, manifest)
        else:
            replaced = previous.resolved_commit if previous is not None else None
            self._drop_snapshots(folder, keep={commit, replaced or commit})

    def _drop_snapshots(self, folder: Path, keep: set[str]) -> None:
        """Snapshots other than ``keep`` (and their blobs); only folders named like a commit are touched."""
        try:
            names = [entry.name for entry in os.scandir(folder / "snapshots")]
        except FileNotFoundError:
            return
        for name in names:
            if name not in keep and is_pinned(name):
                remove_tree(folder / "snapshots" / name, within=self.hub_cache)
        prune_unreferenced_blobs(folder)

    def _drop_paths(self, folder: Path, snapshot: Path, previous: ModelManifest, manifest: ModelManifest) -> None:
        """Narrower patterns: the snapshot should show only what is wanted."""
        wanted = {entry.path for entry in manifest.files}
        dropped = [entry.path for entry in previous.files if entry.path not in wanted]
        for path in dropped:
            try:
                stale = check_inside(snapshot / check_repo_path(path), snapshot)
            except ModelError:
                continue  # an unsafe path in an old manifest: never a reason to remove anything
            stale.unlink(missing_ok=True)
            remove_empty_parents(stale.parent, snapshot)
        if dropped:
            prune_unreferenced_blobs(folder)

    def _manifest(
        self, hf: HuggingFaceModel, folder: Path, snapshot: Path, commit: str, listing: Listing
    ) -> ModelManifest:
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
        check_inside(folder / "blobs" / "probe", folder.parent)  # a planted blobs/ link is never emptied
        entries = list(os.scandir(folder / "blobs"))
    except (FileNotFoundError, ModelError):
        return
    for entry in entries:
        if (
            entry.name not in referenced
            and not entry.name.endswith(".incomplete")
            and not entry.is_dir(follow_symlinks=False)
        ):
            Path(entry.path).unlink(missing_ok=True)  # a link is unlinked, never followed
