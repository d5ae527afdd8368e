"""Start-up mode: make sure a project's models are there before the worker starts.

The common case (everything present) is the offline no-op of ``download``:
manifests and one ``stat`` per file, no request, no lock, no write.
``DOWNLOAD_MODELS_ON_STARTUP=false`` turns downloading off; the result then
still says whether the models are complete.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence

from volume_cli.layout import VolumeLayout
from volume_cli.models.download import DEFAULT_RETRIES, DEFAULT_TIMEOUT, DEFAULT_WORKERS, download
from volume_cli.models.http import DEFAULT_MIN_RATE
from volume_cli.models.results import EnsureResult
from volume_cli.models.status import models_status
from volume_cli.progress import Progress
from volume_cli.project.definition import ProjectDefinition

STARTUP_ENV = "DOWNLOAD_MODELS_ON_STARTUP"
_FALSE = frozenset({"0", "false", "no", "off"})


def downloads_enabled(env: Mapping[str, str]) -> bool:
    return env.get(STARTUP_ENV, "true").strip().lower() not in _FALSE


def ensure(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    hf_endpoints: Sequence[str] | None = None,
    modelscope_endpoints: Sequence[str] | None = None,
    progress: Progress | None = None,
    max_workers: int = DEFAULT_WORKERS,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    consumer_modelscope_version: str | None = None,
    lock_wait_seconds: float = 3600.0,
    env: Mapping[str, str] | None = None,
    min_rate: float = DEFAULT_MIN_RATE,
    deadline: float | None = None,
) -> EnsureResult:
    environ = os.environ if env is None else env
    if not downloads_enabled(environ):
        status = models_status(layout=layout, project=project)
        missing = tuple(model.key for model in status.models if not model.present)
        return EnsureResult(
            project=project.name,
            skipped=True,
            complete=not missing,
            missing=missing,
            reason=f"{STARTUP_ENV} is off",
            download=None,
        )
    result = download(
        layout=layout,
        project=project,
        hf_endpoints=hf_endpoints,
        modelscope_endpoints=modelscope_endpoints,
        progress=progress,
        max_workers=max_workers,
        timeout=timeout,
        retries=retries,
        consumer_modelscope_version=consumer_modelscope_version,
        lock_wait_seconds=lock_wait_seconds,
        env=environ,
        min_rate=min_rate,
        deadline=deadline,
    )
    # Name what happened: "fetched" for a relink that read no byte from the network would be a lie.
    changed = Counter(model.action for model in result.models if model.action != "present")
    reason = "all models present" if not changed else ", ".join(f"{n} model(s) {a}" for a, n in sorted(changed.items()))
    return EnsureResult(
        project=project.name, skipped=False, complete=result.complete, missing=(), reason=reason, download=result
    )
