"""Downloading one model: plan it, list what is needed, check space, fetch under its lease lock, publish."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from volume_cli.config.model_sources import LocalModel, ModelSpec, UrlModel
from volume_cli.errors import DiskSpaceError, VolumeCliError
from volume_cli.fileops import disk_free, remove_tree
from volume_cli.models.endpoints import EndpointPool
from volume_cli.models.fetch_files import ByteCounter, FetchReport, fetch_files, status_error
from volume_cli.models.hf import HuggingFaceSource
from volume_cli.models.http import HttpClient, HttpStatusError, RetryPolicy
from volume_cli.models.localsource import import_local
from volume_cli.models.manifest import ModelManifest, model_lock_path, read_model_manifest, safe_key, write_manifest
from volume_cli.models.modelscope import ModelScopeSource
from volume_cli.models.plan import ModelPlan, plan_model
from volume_cli.models.results import ModelAction, ModelOutcome
from volume_cli.models.sources import FileJob, Listing, RemoteFile, RemoteSource, SourceContext
from volume_cli.models.staging import staging_dir
from volume_cli.models.state import arrangement_is_current
from volume_cli.models.urlsource import UrlSource, url_origin
from volume_cli.progress import Task
from volume_cli.redact import redact_text
from volume_cli.store.lock import LeaseLock, LockRecord
from volume_cli.units import format_bytes

_ACTION_FOR_STATE: dict[str, ModelAction] = {
    "missing": "downloaded",
    "outdated": "updated",
    "refresh": "updated",
    "incomplete": "repaired",
    "relayout": "relinked",
}


@dataclass
class WorkItem:
    plan: ModelPlan
    listing: Listing | None = None
    jobs: list[FileJob] = field(default_factory=list)
    bytes_needed: int = 0


@dataclass(frozen=True)
class DownloadSettings:
    hf_endpoints: list[str]
    modelscope_endpoints: list[str]
    policy: RetryPolicy
    max_workers: int
    lock_wait_seconds: float
    dry_run: bool


class ModelDownloader:
    """One run's downloads, a model at a time: shared endpoint pools, one HTTP client, the failures so far."""

    def __init__(self, context: SourceContext, settings: DownloadSettings, project_folder: Path) -> None:
        self.context = context
        self.settings = settings
        self.project_folder = project_folder
        self.adapters: dict[str, RemoteSource] = {
            "huggingface": HuggingFaceSource(context),
            "modelscope": ModelScopeSource(context),
            "url": UrlSource(context),
        }
        self.pools = {
            "huggingface": EndpointPool("huggingface", settings.hf_endpoints, context.progress),
            "modelscope": EndpointPool("modelscope", settings.modelscope_endpoints, context.progress),
        }
        self._http: HttpClient | None = None
        self.network_used = False
        self.failures: dict[str, Exception] = {}

    @property
    def http(self) -> HttpClient:
        if self._http is None:
            self._http = HttpClient(self.settings.policy)
            self.network_used = True
        return self._http

    def plan(self, spec: ModelSpec, *, refresh: bool) -> ModelPlan:
        return plan_model(self.context.layout, spec, self.project_folder, refresh=refresh)

    def pool_for(self, spec: ModelSpec) -> EndpointPool:
        if isinstance(spec, UrlModel):
            return EndpointPool("url", [url_origin(spec.url)], self.context.progress)
        return self.pools[spec.source]

    # -- phase 1: what is needed -------------------------------------------------------
    def prepare_item(self, plan: ModelPlan) -> WorkItem | ModelOutcome:
        spec = plan.spec
        if plan.state == "present":
            return present_outcome(plan)
        item = WorkItem(plan)
        if isinstance(spec, LocalModel):
            return item
        adapter = self.adapters[spec.source]
        # A URL without a configured sha256 is re-asked before a repair: its content may have changed.
        unpinned_url = isinstance(spec, UrlModel) and spec.sha256 is None
        if plan.state in ("missing", "outdated", "refresh") or unpinned_url:
            try:
                item.listing = adapter.list_remote(spec, pool=self.pool_for(spec), http=self.http)
            except HttpStatusError as exc:
                raise status_error(
                    spec.key, exc, source=spec.source, token_sent=adapter.auth_token() is not None
                ) from None
            unchanged = plan.manifest is not None and _same_files(plan.manifest, item.listing)
            settled = (  # nothing new on the hub, every file whole, and the switch made
                plan.manifest is not None
                and plan.check is not None
                and plan.check.ok
                and arrangement_is_current(self.context.layout, plan.manifest)
            )
            if plan.state == "refresh" and unchanged and settled:
                return present_outcome(plan)
        else:
            assert plan.manifest is not None  # repairs and relinks work from the manifest, offline
            item.listing = listing_from_manifest(plan.manifest)
        item.jobs = adapter.file_jobs(spec, item.listing, plan.manifest)
        item.bytes_needed = sum(max(0, job.size - _partial_size(job.partial)) for job in item.jobs if not job.present)
        return item

    def check_space(self, items: list[WorkItem]) -> tuple[int, int]:
        needed = sum(item.bytes_needed for item in items)
        free = disk_free(self.context.layout.models_dir)
        if needed > free and not self.settings.dry_run:
            raise DiskSpaceError(
                f"the models need {format_bytes(needed)} more but {self.context.layout.root} has only {format_bytes(free)} free",
                hint="free space (volume-cli models gc) or grow the volume",
            )
        return needed, free

    # -- phase 3: doing it ---------------------------------------------------------------
    def apply(self, item: WorkItem, overall: Task) -> ModelOutcome:
        spec = item.plan.spec
        progress = self.context.progress

        def announce(holder: LockRecord) -> None:
            progress.info(f"{spec.key}: waiting for {holder.describe()} to finish with it")

        lock = LeaseLock(
            model_lock_path(self.context.layout, spec.key),
            command=f"models download {spec.key}",
            wait_seconds=_lock_wait(self.settings),
            on_wait=announce,
        )
        with lock:
            current = read_model_manifest(self.context.layout, spec.key)
            if current != item.plan.manifest:
                replanned = self.plan(spec, refresh=False)
                if replanned.state == "present":  # another pod finished it while we waited
                    return present_outcome(replanned)
                if replanned.state in ("incomplete", "relayout") and replanned.manifest is not None:
                    item = WorkItem(replanned, listing=listing_from_manifest(replanned.manifest))
            if isinstance(spec, LocalModel):
                manifest = import_local(self.context, spec, self.project_folder)
                lock.ensure_held()
                write_manifest(self.context.layout, manifest)
                return _done(spec, "imported", manifest, 0, (), None)
            return self._apply_remote(item, current, lock, overall)

    def _apply_remote(
        self, item: WorkItem, current: ModelManifest | None, lock: LeaseLock, overall: Task
    ) -> ModelOutcome:
        spec = item.plan.spec
        adapter = self.adapters[spec.source]
        assert item.listing is not None
        adapter.prepare(spec, current)
        jobs = adapter.file_jobs(spec, item.listing, current)
        pending = [job for job in jobs if not job.present]
        progress = self.context.progress
        if pending:
            resumed = sum(job.size for job in pending) - item.bytes_needed
            kept = f" ({format_bytes(resumed)} already here, resumed)" if resumed > 0 else ""
            progress.step(f"{spec.key}: fetching {len(pending)} file(s), {format_bytes(item.bytes_needed)}{kept}")
        task = progress.task(spec.key, total=float(sum(job.size for job in pending)), unit="bytes")
        counter = ByteCounter(task, overall)
        report = FetchReport()
        try:
            if pending:
                report = fetch_files(
                    key=spec.key,
                    source=spec.source,
                    jobs=jobs,
                    pool=self.pool_for(spec),
                    http=self.http,
                    token=adapter.auth_token(),
                    counter=counter,
                    max_workers=self.settings.max_workers,
                )
        finally:
            task.finish()
        lock.ensure_held()
        manifest = adapter.finalize(spec, item.listing, current, report.sha256)
        if report.endpoints:
            manifest = manifest.model_copy(update={"endpoint": report.endpoints[-1]})
        write_manifest(self.context.layout, manifest)
        adapter.publish(spec, manifest, current)  # the switch comes after the manifest: a kill converges forward
        remove_tree(staging_dir(self.context.layout) / safe_key(spec.key), within=self.context.layout.models_dir)
        action = _ACTION_FOR_STATE.get(item.plan.state, "downloaded")
        return _done(spec, action, manifest, counter.total, tuple(report.fetched), manifest.endpoint)

    def record_failure(self, spec: ModelSpec, exc: Exception) -> ModelOutcome:
        message = str(exc) if isinstance(exc, VolumeCliError) else f"{type(exc).__name__}: {exc}"
        message = redact_text(message)
        if self.failures:  # the first failure becomes the run's error line; warning it too says it twice
            self.context.progress.warn(f"{spec.key}: {message}")
        self.failures[spec.key] = exc
        return ModelOutcome(
            key=spec.key, source=spec.source, action="failed", requested_revision=_revision(spec), error=message
        )


def _lock_wait(settings: DownloadSettings) -> float:
    # Waiting for another pod's download of the same model must not outlive the run's --deadline.
    left = settings.policy.remaining()
    return settings.lock_wait_seconds if left is None else max(0.0, min(settings.lock_wait_seconds, left))


def listing_from_manifest(manifest: ModelManifest) -> Listing:
    files = tuple(RemoteFile.from_manifest(entry) for entry in manifest.files)
    return Listing(manifest.resolved_commit, files, manifest.endpoint)


def _same_files(manifest: ModelManifest, listing: Listing) -> bool:
    if manifest.resolved_commit and listing.resolved_commit:
        return manifest.resolved_commit == listing.resolved_commit
    before = {(entry.path, entry.size, entry.sha256 or entry.git_sha1) for entry in manifest.files}
    after = {(entry.path, entry.size, entry.sha256 or entry.git_sha1) for entry in listing.files}
    return before == after


def _partial_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _revision(spec: ModelSpec) -> str | None:
    return getattr(spec, "revision", None)


def present_outcome(plan: ModelPlan) -> ModelOutcome:
    manifest = plan.manifest
    return ModelOutcome(
        key=plan.key,
        source=plan.spec.source,
        action="present",
        requested_revision=_revision(plan.spec),
        resolved_commit=manifest.resolved_commit if manifest else None,
        endpoint=manifest.endpoint if manifest else None,
        size_bytes=manifest.total_size if manifest else 0,
    )


def _done(
    spec: ModelSpec,
    action: ModelAction,
    manifest: ModelManifest,
    downloaded: int,
    fetched: tuple[str, ...],
    endpoint: str | None,
) -> ModelOutcome:
    return ModelOutcome(
        key=spec.key,
        source=spec.source,
        action=action,
        requested_revision=_revision(spec),
        resolved_commit=manifest.resolved_commit,
        endpoint=endpoint,
        size_bytes=manifest.total_size,
        bytes_downloaded=downloaded,
        files_fetched=fetched,
    )
