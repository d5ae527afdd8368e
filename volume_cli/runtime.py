"""Activate a project's dependencies and models inside a worker.

Standard library only: a worker image may hold nothing but Python and the
volume. Use it as ``import volume_cli.runtime`` or, with nothing installed,
from the copy volume-cli writes onto the volume::

    import runpy
    runtime = runpy.run_path("/runpod-volume/.metadata/runtime/volume_cli_runtime.py")
    runtime["activate"]("speaker-diarization")

``activate`` finds the volume, checks the Python version and that deps and
models are installed, pins ``sys.path`` to the *resolved* current generation
(a worker keeps one consistent set even if the volume switches generation
while it runs) and sets the model cache variables. Anything missing fails
with one message naming the command to run on a pod.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

WORKER_ROOTS = ("/runpod-volume", "/workspace")
ROOT_ENV = "VOLUME_CLI_ROOT"

try:  # inside the volume-cli package: share its error hierarchy
    from volume_cli.errors import RuntimeCheckError as _Base
except ImportError:  # the standalone copy on the volume

    class _Base(Exception):  # type: ignore[no-redef]
        def __init__(self, message: str, *, hint: str | None = None) -> None:
            super().__init__(message)
            self.message = message
            self.hint = hint


class ActivationError(_Base):
    """Deps or models are missing or do not fit this worker."""

    def __str__(self) -> str:
        return f"{self.message} (next: {self.hint})" if self.hint else self.message


def cache_variables(root: Path) -> dict[str, str]:
    """Model cache variables for a volume seen at ``root``, and read-only bytecode.

    Store entries on the volume are shared and immutable: a worker must not
    write ``__pycache__`` files into them (with many workers, that is a
    write storm on the network file system and it changes installed files).
    """
    models = root / "models"
    return {
        "PYTHONDONTWRITEBYTECODE": "1",
        "HF_HOME": str(models / "huggingface"),
        "HF_HUB_CACHE": str(models / "huggingface" / "hub"),
        "MODELSCOPE_CACHE": str(models / "modelscope"),
        "TORCH_HOME": str(models / "torch"),
    }


def deps_path(root: Path, project: str, python_version: str) -> Path:
    return root / "python-deps" / f"py{python_version}" / project


def find_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    candidates = [explicit] if explicit else [os.environ.get(ROOT_ENV) or None, *WORKER_ROOTS]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    tried = ", ".join(str(candidate) for candidate in candidates if candidate)
    raise ActivationError(
        f"no volume found (tried {tried})",
        hint="attach the network volume to this endpoint, or pass root= / set VOLUME_CLI_ROOT",
    )


@dataclass(frozen=True)
class Inspection:
    """What ``doctor`` reports and ``activate`` acts on."""

    project: str
    root: Path
    python_version: str | None
    running_python: str
    deps_link: Path | None
    deps_generation: Path | None
    models_complete: bool
    model_keys: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (message, next command)

    @property
    def ok(self) -> bool:
        return not self.problems


def inspect(project: str, root: str | os.PathLike[str] | None = None, *, require_models: bool = True) -> Inspection:
    volume = find_root(root)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    problems: list[tuple[str, str]] = []
    state_file = volume / ".metadata" / "projects" / project / "state.json"
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        if os.path.isdir(deps_path(volume, project, running)):
            state = {}  # a first install killed right after its switch: the link is the truth
        else:
            return Inspection(
                project, volume, None, running, None, None, False,
                problems=[(f"project {project!r} was never set up on the volume at {volume}", f"volume-cli setup --project {project}")],
            )  # fmt: skip
    except (OSError, ValueError) as exc:
        return Inspection(
            project, volume, None, running, None, None, False,
            problems=[(f"cannot read {state_file}: {exc}", f"volume-cli status --project {project}")],
        )  # fmt: skip
    python_version = state.get("python_version")
    if python_version and python_version != running:
        problems.append(
            (
                f"project {project!r} is installed for Python {python_version} but this worker runs Python {running}",
                f"use a python:{python_version} base image (or change the project's python_version and reinstall)",
            )
        )
    link = deps_path(volume, project, python_version or running)
    generation: Path | None = None
    if not state.get("deps") and not (os.path.islink(link) and os.path.isdir(link)):
        problems.append(
            (f"dependencies of {project!r} are not installed", f"volume-cli deps install --project {project}")
        )
    else:
        resolved = Path(os.path.realpath(link))
        if resolved.is_dir():
            generation = resolved
        else:
            problems.append(
                (f"dependencies of {project!r} are missing at {link}", f"volume-cli deps install --project {project}")
            )
    models = state.get("models")
    models_complete = bool(models)
    if require_models and not models:
        problems.append(
            (f"models of {project!r} were never downloaded", f"volume-cli models download --project {project}")
        )
    return Inspection(
        project=project,
        root=volume,
        python_version=python_version,
        running_python=running,
        deps_link=link,
        deps_generation=generation,
        models_complete=models_complete,
        model_keys=list(models.get("model_keys", [])) if models else [],
        problems=problems,
    )


@dataclass(frozen=True)
class Activation:
    project: str
    root: Path
    python_version: str
    sys_path_entry: Path
    environment: dict[str, str]


def activate(
    project: str,
    root: str | os.PathLike[str] | None = None,
    *,
    require_models: bool = True,
    offline: bool = True,
) -> Activation:
    """Put the project's current generation on sys.path and set the cache variables."""
    found = inspect(project, root, require_models=require_models)
    if found.problems:
        message, hint = found.problems[0]
        raise ActivationError(f"volume-cli: {message}", hint=f"on a pod with the volume: {hint}")
    assert found.deps_generation is not None and found.python_version is not None
    entry = found.deps_generation
    stable = str(found.deps_link)
    # Drop the stable (switchable) path if PYTHONPATH put it there: this
    # process must keep importing from one generation for its whole life.
    sys.path[:] = [item for item in sys.path if item not in (stable, str(entry))]
    sys.path.insert(0, str(entry))
    sys.dont_write_bytecode = True
    environment = cache_variables(found.root)
    if offline and found.models_complete:
        environment["HF_HUB_OFFLINE"] = "1"
    os.environ.update(environment)
    return Activation(project, found.root, found.python_version, entry, environment)


if __name__ == "__main__":  # python volume_cli_runtime.py PROJECT [ROOT]: a quick check on a worker
    try:
        result = inspect(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    except ActivationError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    for message, hint in result.problems:
        print(f"error: {message}\nnext: {hint}", file=sys.stderr)
    if result.ok:
        print(f"ok: {result.project} ready at {result.deps_generation}")
    sys.exit(0 if result.ok else 1)
