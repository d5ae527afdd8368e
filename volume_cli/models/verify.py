"""``verify``: quick (presence and sizes) or deep (checksums of every byte).

A deep check records the damaged files in the manifest (under the model's
lock) so the next ``download`` re-fetches exactly those files.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from volume_cli.layout import VolumeLayout
from volume_cli.models.checksums import hash_file
from volume_cli.models.manifest import (
    ManifestFile,
    ModelManifest,
    all_manifests,
    model_lock_path,
    quick_check,
    read_model_manifest,
    write_manifest,
)
from volume_cli.models.plan import unique_specs
from volume_cli.models.results import DamagedFile, ModelVerification, Problem, VerifyResult
from volume_cli.progress import NullProgress, Progress, Task
from volume_cli.project.definition import ProjectDefinition
from volume_cli.store.lock import LeaseLock


def verify(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition | None = None,
    deep: bool = False,
    progress: Progress | None = None,
    max_workers: int = 2,
    lock_wait_seconds: float = 600.0,
) -> VerifyResult:
    """Check the project's models (or every model on the volume when ``project`` is None)."""
    reporter: Progress = progress if progress is not None else NullProgress()
    if project is not None:
        pairs = [(spec.key, read_model_manifest(layout, spec.key)) for spec in unique_specs(project.models)]
    else:
        pairs = [(manifest.key, manifest) for manifest in all_manifests(layout)]
    results = []
    for key, manifest in pairs:
        if manifest is None:
            results.append(ModelVerification(key=key, checked_files=0, checked_bytes=0, damaged=(), state="missing"))
            continue
        results.append(_verify_model(layout, manifest, deep, reporter, max_workers, lock_wait_seconds))
    return VerifyResult(deep=deep, models=tuple(results))


def _verify_model(
    layout: VolumeLayout, manifest: ModelManifest, deep: bool, progress: Progress, max_workers: int, lock_wait: float
) -> ModelVerification:
    check = quick_check(layout, manifest)
    damaged: dict[str, Problem] = {path: "missing" for path in check.missing}
    damaged.update({path: "size" for path in check.wrong_size})
    checked_bytes = check.present_bytes
    if deep:
        to_hash = [entry for entry in manifest.files if entry.path not in damaged and entry.checksum is not None]
        task = progress.task(f"verify {manifest.key}", total=float(sum(entry.size for entry in to_hash)), unit="bytes")
        try:
            root = layout.absolute(manifest.files_root)
            with ThreadPoolExecutor(max_workers=max(1, max_workers)) as executor:
                for entry, ok in zip(
                    to_hash, executor.map(lambda item: _hash_ok(root, item, task), to_hash), strict=True
                ):
                    if not ok:
                        damaged[entry.path] = "checksum"
        finally:
            task.finish()
        _record_damage(layout, manifest, sorted(damaged), lock_wait)
    else:
        damaged.update({path: "checksum" for path in manifest.damaged if path not in damaged})
    files = tuple(DamagedFile(path, problem) for path, problem in sorted(damaged.items()))
    return ModelVerification(
        key=manifest.key,
        checked_files=len(manifest.files),
        checked_bytes=checked_bytes,
        damaged=files,
        state="present" if not files else "incomplete",
    )


def _hash_ok(root: Path, entry: ManifestFile, task: Task) -> bool:
    checksum = entry.checksum
    assert checksum is not None
    try:
        actual = hash_file(root / entry.path, checksum.algorithm, size=entry.size)
    except OSError:
        return False
    task.advance(entry.size)
    return actual == checksum.digest


def _record_damage(layout: VolumeLayout, manifest: ModelManifest, damaged: list[str], lock_wait: float) -> None:
    if damaged == sorted(manifest.damaged):
        return
    with LeaseLock(
        model_lock_path(layout, manifest.key), command=f"models verify {manifest.key}", wait_seconds=lock_wait
    ):
        current = read_model_manifest(layout, manifest.key)
        if current is None or current.downloaded_at != manifest.downloaded_at:
            return  # re-downloaded meanwhile: our findings are about files that are gone
        write_manifest(layout, current.model_copy(update={"damaged": damaged}))
