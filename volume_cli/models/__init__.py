"""The models engine: HuggingFace, ModelScope, URL and local models onto the volume.

Core library for the CLI: explicit paths, keyword-only arguments, frozen
results. Importing this package never imports ``huggingface_hub``,
``modelscope`` or ``requests``; only a run that has to talk to a hub does.

    download(layout=..., project=...)        plan offline, fetch what is missing
    ensure(layout=..., project=...)          start-up mode (DOWNLOAD_MODELS_ON_STARTUP)
    models_status(layout=..., project=...)   from manifests; no network, no hashing
    list_models(layout=..., projects=...)    desired versus present
    verify(layout=..., deep=...)             sizes, or checksums (damage recorded for download)
    gc(layout=..., referenced_keys=...)      remove models no project references
"""

from __future__ import annotations

from volume_cli.models.download import download
from volume_cli.models.endpoints import HF_DEFAULT_ENDPOINT, MODELSCOPE_DEFAULT_ENDPOINT, resolve_endpoints
from volume_cli.models.ensure import STARTUP_ENV, ensure
from volume_cli.models.gc import gc, remove
from volume_cli.models.manifest import ManifestFile, ModelManifest, manifest_path, read_model_manifest
from volume_cli.models.mslayout import variant_for as modelscope_layout_variant
from volume_cli.models.results import (
    DamagedFile,
    DownloadResult,
    EnsureResult,
    GcResult,
    ModelChecksumError,
    ModelDownloadError,
    ModelListing,
    ModelOutcome,
    ModelsStatus,
    ModelStatus,
    ModelVerification,
    RemovedModel,
    VerifyResult,
)
from volume_cli.models.status import list_models, models_status
from volume_cli.models.verify import verify

__all__ = [
    "HF_DEFAULT_ENDPOINT",
    "MODELSCOPE_DEFAULT_ENDPOINT",
    "STARTUP_ENV",
    "DamagedFile",
    "DownloadResult",
    "EnsureResult",
    "GcResult",
    "ManifestFile",
    "ModelChecksumError",
    "ModelDownloadError",
    "ModelListing",
    "ModelManifest",
    "ModelOutcome",
    "ModelStatus",
    "ModelVerification",
    "ModelsStatus",
    "RemovedModel",
    "VerifyResult",
    "download",
    "ensure",
    "gc",
    "list_models",
    "manifest_path",
    "models_status",
    "modelscope_layout_variant",
    "read_model_manifest",
    "remove",
    "resolve_endpoints",
    "verify",
]
