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
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from volume_cli.config.model_sources import ModelScopeModel, ModelSpec
from volume_cli.errors import ModelError
from volume_cli.fileops import (
    atomic_write_bytes,
    atomic_write_text,
    exchange_paths,
    is_file_of_size,
    relative_symlink,
    remove_tree,
    unique_sibling,
)
from volume_cli.fsguard import check_inside, is_inside
from volume_cli.layout import VolumeLayout
from volume_cli.models.endpoints import EndpointPool
from volume_cli.models.http import HttpClient
from volume_cli.models.identifiers import check_revision, check_sha256, check_size, check_subfolder
from volume_cli.models.manifest import ModelManifest, safe_key, spec_hash
from volume_cli.models.mslayout import CURRENT_NAME, MsLayout, plan_layout
from volume_cli.models.sources import FileJob, Listing, RemoteFile, SourceContext, check_repo_path, filter_paths
from volume_cli.models.staging import staging_dir
from volume_cli.models.tokens import auth_headers, modelscope_token

_LISTING_CAP = 3000
REVISIONS_VARIANT = "revisions"  # manifests of the one-switch layout (older ones name a release's folder)


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
    def prepare(self, spec: ModelSpec, previous: ModelManifest | None) -> None:
        """Nothing to move: a new revision is built aside and files never change places."""
        return None

    def revision_folder(self, spec: ModelScopeModel, listing: Listing) -> Path:
        """One folder per listing: a rerun of a killed build (or a repair) finds the same folder."""
        digest = hashlib.sha256((listing.resolved_commit or "").encode())
        for entry in listing.files:
            digest.update(f"\0{entry.path}\0{entry.size}\0{entry.sha256}\0{entry.revision}".encode())
        return self.layout_for(spec.model_id, spec.revision).store / f"rev-{digest.hexdigest()[:16]}"

    def _partial(self, key: str, entry: RemoteFile) -> Path:
        # The checksum is part of the name: a partial of another revision's file is never resumed.
        name = hashlib.sha1(f"{entry.path}\0{entry.sha256}".encode()).hexdigest()[:20] + ".part"
        return staging_dir(self.context.layout) / safe_key(key) / name

    def file_jobs(self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None) -> list[FileJob]:
        ms = _as_ms(spec)
        revision = self.revision_folder(ms, listing)
        reusable = _reusable(self.context.layout, listing, previous, revision)
        jobs = []
        checked: set[Path] = set()
        for entry in listing.files:
            final = check_inside(revision / check_repo_path(entry.path), self.cache, known=checked)

            def url_for(endpoint: str, path: str = entry.path) -> str:
                return (
                    f"{endpoint}/api/v1/models/{ms.model_id}/repo"
                    f"?Revision={quote(ms.revision, safe='')}&FilePath={quote(path, safe='')}"
                )

            jobs.append(
                FileJob(
                    file=entry,
                    final=final,
                    partial=check_inside(self._partial(ms.key, entry), self.context.layout.models_dir, known=checked),
                    url_for=url_for,
                    present=entry.path in reusable,
                )
            )
        return jobs

    def finalize(
        self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None, fetched_sha256: Mapping[str, str]
    ) -> ModelManifest:
        """Complete the revision folder (unchanged files linked from the live one); nothing is switched yet."""
        ms = _as_ms(spec)
        planned = self.layout_for(ms.model_id, ms.revision)
        revision = self.revision_folder(ms, listing)
        layout = self.context.layout
        live = _live_folder(layout, previous)
        scratch = staging_dir(layout) / safe_key(ms.key)
        for entry in listing.files:
            target = revision / entry.path
            if not is_file_of_size(target, entry.size):
                if live is None or not is_file_of_size(live / entry.path, entry.size):
                    raise ModelError(f"{ms.key}: {entry.path} is missing from the new revision; nothing was switched")
                _link_or_copy(live / entry.path, target, scratch)
        self._write_client_index(ms, listing, revision)
        return ModelManifest(
            key=ms.key,
            source="modelscope",
            model_id=ms.model_id,
            repo_type="model",
            requested_revision=ms.revision,
            resolved_commit=listing.resolved_commit,
            spec_hash=spec_hash(ms),
            target=layout.relative(planned.store),
            files_root=layout.relative(revision),
            links=[layout.relative(link) for link in (planned.current, *planned.folders)],
            layout_variant=REVISIONS_VARIANT,
            files=[entry.as_manifest() for entry in listing.files],
            total_size=sum(entry.size or 0 for entry in listing.files),
            endpoint=listing.endpoint,
            downloaded_at=self.context.now,
        )

    def publish(self, spec: ModelSpec, manifest: ModelManifest, previous: ModelManifest | None) -> None:
        """After the manifest is written: switch ``current`` (one rename), then link every release's folder.

        A kill before the switch leaves the old revision live and a manifest
        naming the new one, which the next run's plan sees as a relayout.
        """
        ms = _as_ms(spec)
        layout = self.context.layout
        planned = self.layout_for(ms.model_id, ms.revision)
        revision = check_inside(layout.absolute(manifest.files_root), planned.store)
        # What readers saw until now stays for those that resolved it a moment ago; older revisions go.
        keep = {revision.name, _link_name(planned.current)}
        if previous is not None:
            keep.add(PurePosixPath(previous.files_root).name)
        relative_symlink(check_inside(planned.current, self.cache), revision)
        _drop_revisions(planned.store, keep)
        for folder in planned.folders:
            _link_folder(check_inside(folder, self.cache), planned.current)
        wanted = {layout.relative(link) for link in (planned.current, *planned.folders)}
        for old_link in previous.links if previous else []:
            path = layout.absolute(old_link)
            if old_link not in wanted and path.is_symlink() and is_inside(path, self.cache):
                path.unlink()

    def _write_client_index(self, spec: ModelScopeModel, listing: Listing, folder: Path) -> None:
        """The files releases before 1.38 read to accept a cached folder (``local_files_only``)."""
        fallback = listing.resolved_commit or spec.revision
        index = [{"Path": entry.path, "Revision": entry.revision or fallback} for entry in listing.files]
        atomic_write_bytes(folder / ".msc", pickle.dumps(index, protocol=4))
        owner, name = spec.model_id.split("/", 1)
        meta = {"id": f"{owner}/{name.replace('.', '___')}"}  # what the clients write themselves
        atomic_write_bytes(folder / ".mdl", pickle.dumps(meta, protocol=4))
        created = int(self.context.now.timestamp())
        atomic_write_text(folder / ".mv", f"Revision:{spec.revision},CreatedAt:{created}")


def revision_is_live(layout: VolumeLayout, manifest: ModelManifest) -> bool:
    """``current`` names the manifest's revision and every release's folder links to it (a few readlinks)."""
    planned = plan_layout(layout.modelscope_cache, manifest.model_id, manifest.requested_revision or "master", None)
    revision = layout.absolute(manifest.files_root)
    if revision.parent != planned.store or not _links_to(planned.current, revision):
        return False
    return all(_links_to(folder, planned.current) for folder in planned.folders)


def _reusable(layout: VolumeLayout, listing: Listing, previous: ModelManifest | None, revision: Path) -> set[str]:
    """Files already in the new revision folder, or unchanged in the live one (linked, not fetched)."""
    known = {entry.path: entry for entry in previous.files} if previous else {}
    damaged = set(previous.damaged) if previous else set()
    live = _live_folder(layout, previous)
    found = set()
    for entry in listing.files:
        before = known.get(entry.path)
        if entry.path in damaged and live == revision:
            continue
        unchanged = before is not None and before.sha256 == entry.sha256 and entry.path not in damaged
        if is_file_of_size(revision / entry.path, entry.size) or (
            unchanged and live is not None and is_file_of_size(live / entry.path, entry.size)
        ):
            found.add(entry.path)
    return found


def _link_name(link: Path) -> str:
    try:
        return os.path.basename(os.readlink(link))
    except OSError:
        return ""


def _links_to(link: Path, target: Path) -> bool:
    try:
        return os.readlink(link) == os.path.relpath(target, link.parent)
    except OSError:
        return False


def _link_folder(folder: Path, target: Path) -> None:
    """Point a release's folder at ``target``; a real folder there (an older layout) is swapped out, not deleted first."""
    if not folder.is_dir() or folder.is_symlink():
        relative_symlink(folder, target)
        return
    link = unique_sibling(folder, "link")
    relative_symlink(link, target, replace=False)
    if exchange_paths(link, folder):
        aside = link  # now the old folder
    else:
        aside = unique_sibling(folder, "old")
        os.rename(folder, aside)  # readers miss the folder only between these two renames
        os.replace(link, folder)
    # Parked in the store until the next switch, for a reader that opened it a moment ago.
    store = target.parent
    os.rename(aside, store / f".retired-{uuid.uuid4().hex[:12]}")


def _link_or_copy(source: Path, target: Path, scratch: Path) -> None:
    """An unchanged file joins the new revision as a hard link (no bytes); a copy where links fail."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    temp = unique_sibling(scratch / target.name, "copy")
    try:
        os.link(source, temp)
    except OSError:
        shutil.copy2(source, temp)
    os.replace(temp, target)


def _drop_revisions(store: Path, keep: set[str]) -> None:
    try:
        entries = list(os.scandir(store))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name != CURRENT_NAME and entry.name not in keep:
            remove_tree(Path(entry.path), within=store)


def _live_folder(layout: VolumeLayout, previous: ModelManifest | None) -> Path | None:
    """The previous revision's folder, unless its manifest names a place outside the cache (never obeyed)."""
    if previous is None:
        return None
    live = layout.absolute(previous.files_root)
    return live if is_inside(live, layout.modelscope_cache) else None
