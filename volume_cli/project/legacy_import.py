"""Folders in the original runpod-model-manager layout: ``config.py`` + ``dependencies.yaml``, no ``project.yaml``.

The original ``config.py`` imports the old tool's own base class (``from ..base
import BaseProject``), so it cannot be imported here, and running a file just
to read three constants would be a needless risk: it is read statically with
``ast``: the ``name`` and ``python_version`` properties returning a constant,
and the ``models`` property returning a dict literal of lists of ids.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from volume_cli.errors import ConfigError

LEGACY_CONFIG = "config.py"
_SOURCES = {"huggingface": "repo_id", "modelscope": "model_id"}
_MAX_CONFIG_BYTES = 1_000_000


@dataclass(frozen=True)
class LegacyConfig:
    """What an original ``config.py`` declares, as far as it can be read without running it."""

    name: str | None = None
    python_version: str | None = None
    models: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImportResult:
    folder: Path
    project_yaml: Path
    name: str
    python_version: str
    models: int
    notes: list[str]


def _returned_constant(function: ast.FunctionDef) -> ast.expr | None:
    returns = [node.value for node in ast.walk(function) if isinstance(node, ast.Return) and node.value is not None]
    return returns[0] if len(returns) == 1 else None


def _models_from(node: ast.expr, path: Path, notes: list[str]) -> list[dict[str, str]]:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        notes.append(f"{path}:{node.lineno}: the models are computed, not a literal dict; add them to project.yaml")
        return []
    if not isinstance(value, dict):
        notes.append(f"{path}:{node.lineno}: models is not a dict of source -> list of ids; skipped")
        return []
    models: list[dict[str, str]] = []
    for source, ids in value.items():
        key = _SOURCES.get(str(source))
        if key is None or not isinstance(ids, list | tuple):
            notes.append(f"{path}:{node.lineno}: models source {source!r} is not huggingface or modelscope; skipped")
            continue
        models += [{"source": str(source), key: str(repo)} for repo in ids if isinstance(repo, str)]
    return models


def read_legacy_config(path: Path) -> LegacyConfig:
    """Read ``config.py`` with ``ast`` only: it is never imported or executed."""
    try:
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise ConfigError([f"{path}: larger than 1 MB; not an original config.py"])
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot be read: {exc}"]) from None
    except SyntaxError as exc:
        raise ConfigError([f"{path}:{exc.lineno}: not valid Python: {exc.msg}"]) from None
    found: dict[str, Any] = {}
    notes: list[str] = []
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        for function in (node for node in cls.body if isinstance(node, ast.FunctionDef)):
            value = _returned_constant(function)
            if value is None or function.name in found:
                continue
            if function.name == "models":
                found["models"] = _models_from(value, path, notes)
            elif function.name in {"name", "python_version"} and isinstance(value, ast.Constant):
                found[function.name] = str(value.value)
    return LegacyConfig(
        name=found.get("name"),
        python_version=found.get("python_version"),
        models=found.get("models", []),
        notes=notes,
    )


def import_legacy_folder(folder: Path, *, force: bool = False) -> ImportResult:
    """Write ``project.yaml`` for a folder of the original layout; its other files stay as they are."""
    from volume_cli.config.dependencies import load_dependency_config
    from volume_cli.project.definition import ProjectSpec

    target = folder / "project.yaml"
    hint = f"run: volume-cli projects check --projects-dir {folder.parent}"
    if (folder / "project.py").exists() or (target.exists() and not force):
        raise ConfigError([f"{folder}: already has a project file; nothing to import"], hint=hint)
    legacy = read_legacy_config(folder / LEGACY_CONFIG) if (folder / LEGACY_CONFIG).is_file() else LegacyConfig()
    metadata = load_dependency_config(folder / "dependencies.yaml").metadata
    name = legacy.name or (metadata.project if metadata else None) or folder.name.lower().replace("_", "-")
    python = legacy.python_version or (metadata.python_version if metadata else None) or "3.10"
    data: dict[str, Any] = {"name": name, "python_version": python, "models": legacy.models}
    if metadata and metadata.description:
        data["description"] = metadata.description
    try:
        ProjectSpec.model_validate(data)
    except ValueError as exc:
        raise ConfigError([f"{folder}: the imported settings are not valid: {exc}"], hint=hint) from None
    text = "# Imported from the original tool's config.py by: volume-cli projects import\n"
    text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)
    return ImportResult(
        folder=folder,
        project_yaml=target,
        name=name,
        python_version=python,
        models=len(legacy.models),
        notes=legacy.notes,
    )
