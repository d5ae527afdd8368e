"""volume-cli: Python dependencies and AI models on a persistent network volume.

Public API for project plugins (imported lazily so that ``volume_cli.runtime``
stays importable on a worker with nothing but the standard library)::

    from volume_cli import Project, HookContext, HuggingFaceModel, ModelScopeModel, UrlModel, LocalModel
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Project": "volume_cli.project.base",
    "HookContext": "volume_cli.project.base",
    "HuggingFaceModel": "volume_cli.config.model_sources",
    "ModelScopeModel": "volume_cli.config.model_sources",
    "UrlModel": "volume_cli.config.model_sources",
    "LocalModel": "volume_cli.config.model_sources",
}

__all__ = [
    "HookContext",
    "HuggingFaceModel",
    "LocalModel",
    "ModelScopeModel",
    "Project",
    "UrlModel",
    "__version__",
]

if TYPE_CHECKING:
    from volume_cli.config.model_sources import HuggingFaceModel, LocalModel, ModelScopeModel, UrlModel
    from volume_cli.project.base import HookContext, Project


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'volume_cli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
