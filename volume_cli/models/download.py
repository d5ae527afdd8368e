"""``download``: plan offline, then list, check space and fetch only what is missing.

A model whose manifest matches the files present is skipped without a
single request, so a start-up check works with the hub unreachable.
One model failing does not stop the others; the run then raises a
``ModelDownloadError`` carrying the full result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

from volume_cli.config.model_sources import ModelSpec
from volume_cli.errors import ChecksumError, ModelError
from volume_cli.layout import VolumeLayout
from volume_cli.models.endpoints import HF_DEFAULT_ENDPOINT, MODELSCOPE_DEFAULT_ENDPOINT, resolve_endpoints
from volume_cli.models.http import DEFAULT_MIN_RATE, RetryPolicy, with_deadline
from volume_cli.models.manifest import models_config_hash, read_model_manifest
from volume_cli.models.model_download import DownloadSettings, ModelDownloader, WorkItem, present_outcome
from volume_cli.models.plan import unique_specs
from volume_cli.models.results import DownloadResult, ModelChecksumError, ModelDownloadError, ModelOutcome
from volume_cli.models.sources import SourceContext
from volume_cli.progress import NullProgress, Progress
from volume_cli.project.definition import ProjectDefinition
from volume_cli.store.state import ModelsRecord, read_project_state, update_project_state, utc_now

DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 4
DEFAULT_WORKERS = 8


def download(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    hf_endpoints: Sequence[str] | None = None,
    modelscope_endpoints: Sequence[str] | None = None,
    refresh: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    max_workers: int = DEFAULT_WORKERS,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    backoff: float = 0.5,
    consumer_modelscope_version: str | None = None,
    lock_wait_seconds: float = 3600.0,
    env: Mapping[str, str] | None = None,
    min_rate: float = DEFAULT_MIN_RATE,
    deadline: float | None = None,
) -> DownloadResult:
    """Make every model of ``project`` present and verified on the volume.

    ``min_rate`` (bytes/s over a window of ``timeout`` s) cuts a trickling transfer; ``deadline``
    (seconds) bounds the whole run, partial files kept for the next one."""
    started = time.monotonic()
    reporter: Progress = progress if progress is not None else NullProgress()
    environ = os.environ if env is None else env
    if consumer_modelscope_version is None:
        # The modelscope the project's workers import decides the layout they read.
        from volume_cli.deps.lock import locked_version

        consumer_modelscope_version = locked_version(layout, project.name, "modelscope")
    context = SourceContext(layout, reporter, environ, consumer_modelscope_version, utc_now())
    settings = _settings(
        project,
        environ,
        hf_endpoints=hf_endpoints,
        modelscope_endpoints=modelscope_endpoints,
        policy=with_deadline(
            RetryPolicy(timeout=timeout, retries=retries, backoff=backoff, min_rate=min_rate), deadline
        ),
        max_workers=max_workers,
        lock_wait_seconds=lock_wait_seconds,
        dry_run=dry_run,
    )
    downloader = ModelDownloader(context, settings, project.folder)
    specs = unique_specs(project.models)
    outcomes, items = _prepare_all(downloader, specs, refresh=refresh)
    needed, free = downloader.check_space(items) if items else (0, None)
    _apply_all(downloader, items, outcomes, dry_run=dry_run, progress=reporter)

    result = DownloadResult(
        project=project.name,
        models=tuple(outcomes[spec.key] for spec in specs),
        dry_run=dry_run,
        network_used=downloader.network_used,
        bytes_needed=needed,
        free_bytes=free,
        seconds=time.monotonic() - started,
    )
    if downloader.failures:
        _raise_failures(result, downloader.failures)
    if not dry_run:
        record_project_models(layout, project)
    return result


def _settings(
    project: ProjectDefinition,
    environ: Mapping[str, str],
    *,
    hf_endpoints: Sequence[str] | None,
    modelscope_endpoints: Sequence[str] | None,
    policy: RetryPolicy,
    max_workers: int,
    lock_wait_seconds: float,
    dry_run: bool,
) -> DownloadSettings:
    return DownloadSettings(
        # The order of precedence: the caller's list (CLI), the project's config, the environment, the hub.
        hf_endpoints=resolve_endpoints(
            hf_endpoints or project.spec.hf_endpoints, env=environ, env_var="HF_ENDPOINT", default=HF_DEFAULT_ENDPOINT
        ),
        modelscope_endpoints=resolve_endpoints(
            modelscope_endpoints or project.spec.modelscope_endpoints,
            env=environ,
            env_var="MODELSCOPE_ENDPOINT",
            default=MODELSCOPE_DEFAULT_ENDPOINT,
        ),
        policy=policy,
        max_workers=max_workers,
        lock_wait_seconds=lock_wait_seconds,
        dry_run=dry_run,
    )


def _prepare_all(
    downloader: ModelDownloader, specs: Sequence[ModelSpec], *, refresh: bool
) -> tuple[dict[str, ModelOutcome], list[WorkItem]]:
    """Plan every model offline: the present ones get their outcome, the others a work item (or a failure)."""
    outcomes: dict[str, ModelOutcome] = {}
    items: list[WorkItem] = []
    for spec in specs:
        plan = downloader.plan(spec, refresh=refresh)
        if plan.state == "present":
            outcomes[spec.key] = present_outcome(plan)
            continue
        try:
            prepared = downloader.prepare_item(plan)
        except (ModelError, OSError) as exc:
            outcomes[spec.key] = downloader.record_failure(spec, exc)
            continue
        if isinstance(prepared, WorkItem):
            items.append(prepared)
        else:
            outcomes[spec.key] = prepared

    return outcomes, items


def _apply_all(
    downloader: ModelDownloader,
    items: list[WorkItem],
    outcomes: dict[str, ModelOutcome],
    *,
    dry_run: bool,
    progress: Progress,
) -> None:
    """Fetch every work item (or mark it planned); one model failing does not stop the others."""
    if dry_run:
        for item in items:
            outcomes[item.plan.key] = ModelOutcome(
                key=item.plan.key, source=item.plan.spec.source, action="planned", size_bytes=item.bytes_needed
            )
    elif items:
        # Whole files, as each model's bar: a resumed partial is counted in as it is adopted.
        whole = sum(job.size for item in items for job in item.jobs if not job.present)
        overall = progress.task("models", total=float(whole), unit="bytes")
        try:
            for item in items:
                try:
                    outcomes[item.plan.key] = downloader.apply(item, overall)
                except (ModelError, OSError) as exc:
                    outcomes[item.plan.key] = downloader.record_failure(item.plan.spec, exc)
        finally:
            overall.finish()


def _raise_failures(result: DownloadResult, failures: dict[str, Exception]) -> None:
    first_key, first = next(iter(failures.items()))
    count = len(failures)
    message = f"{first_key}: {first}" if count == 1 else f"{count} models failed; first: {first_key}: {first}"
    hint = getattr(first, "hint", None)
    if all(isinstance(exc, ChecksumError) for exc in failures.values()):
        raise ModelChecksumError(message, result=result, failures=failures, hint=hint)
    raise ModelDownloadError(message, result=result, failures=failures, hint=hint)


def record_project_models(layout: VolumeLayout, project: ProjectDefinition) -> None:
    """Update ProjectState.models when every model is present (skipped when already recorded)."""
    specs = unique_specs(project.models)
    manifests = [read_model_manifest(layout, spec.key) for spec in specs]
    size = sum(manifest.total_size for manifest in manifests if manifest is not None)
    config_hash = models_config_hash(specs)
    state = read_project_state(layout, project.name)
    if (
        state is not None
        and state.models is not None
        and state.models.config_hash == config_hash
        and state.models.size_bytes == size
    ):
        return  # nothing new: the start-up no-op writes nothing
    record = ModelsRecord(
        downloaded_at=utc_now(), config_hash=config_hash, model_keys=[spec.key for spec in specs], size_bytes=size
    )
    update_project_state(
        layout, project.name, project.python_version, lambda current: current.model_copy(update={"models": record})
    )
