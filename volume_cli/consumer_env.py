"""``volume-cli env``: what a consumer (worker, notebook) sets to use the volume."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from volume_cli.errors import RootError
from volume_cli.fileops import atomic_write_bytes
from volume_cli.layout import VolumeLayout
from volume_cli.project.definition import ProjectDefinition
from volume_cli.runtime import LOCAL_CACHE_ENV, boot_path, cache_variables, deps_path, missing_models
from volume_cli.store.state import read_project_state

EnvFormat = Literal["shell", "dotenv", "dockerfile", "json"]


@dataclass(frozen=True)
class ConsumerEnv:
    project: str
    mount: Path
    variables: dict[str, str]
    models_complete: bool
    # Prepended to PATH (shell and Dockerfile formats only: a dotenv or JSON value cannot extend PATH).
    bin_dir: Path | None = None


def consumer_env(
    *,
    layout: VolumeLayout,
    project: str,
    python_version: str,
    mount: Path | None,
    local_cache: Path | None = None,
    models_hash: str | None = None,
) -> ConsumerEnv:
    """Variables for the volume as seen at ``mount`` (default: where it is now).

    ``models_hash`` is the project definition's model list hash: models
    downloaded for another list do not make workers offline.
    ``local_cache`` is a folder on the consumer's local disk for what
    libraries write at run time (default: $VOLUME_CLI_LOCAL_CACHE or /tmp).

    PYTHONPATH is the project's boot folder, not the switchable link: see
    ``volume_cli/worker_boot.py``. It is written here if an older install did
    not, so what is printed always exists.
    """
    seen_at = mount or layout.root
    write_boot(layout, project, python_version)
    state = read_project_state(layout, project)
    # The record alone is not enough: `models rm` or a lost file leaves it behind.
    models_complete = bool(
        state
        and state.models is not None
        and (models_hash is None or state.models.config_hash == models_hash)
        and not missing_models(layout.root, state.models.model_keys)
    )
    variables = {
        "PYTHONPATH": str(boot_path(seen_at, project, python_version)),
        **cache_variables(seen_at, local_cache),
    }
    if local_cache is not None:
        # The boot reads it for the local copy of the generation (volume_cli/local_copy.py).
        variables[LOCAL_CACHE_ENV] = str(local_cache)
    if models_complete:
        # Every model is on the volume: a worker must never call the hub.
        variables["HF_HUB_OFFLINE"] = "1"
    # The switchable link's bin/, not a pinned generation's: see docs/concepts.md (console scripts).
    has_bin = (deps_path(layout.root, project, python_version) / "bin").is_dir()
    return ConsumerEnv(
        project=project,
        mount=seen_at,
        variables=variables,
        models_complete=models_complete,
        bin_dir=deps_path(seen_at, project, python_version) / "bin" if has_bin else None,
    )


def declared_models_hash(definition: ProjectDefinition) -> str:
    """What ``ModelsRecord.config_hash`` says once every model of ``definition`` was downloaded."""
    from volume_cli.models.manifest import models_config_hash
    from volume_cli.models.plan import unique_specs

    return models_config_hash(unique_specs(definition.models))


def render_env(env: ConsumerEnv, style: EnvFormat) -> str:
    if style == "json":
        return json.dumps(env.variables, indent=2) + "\n"
    lines: list[str] = []
    for name, value in env.variables.items():
        if style == "shell":
            if name == "PYTHONPATH":  # keep what the shell already had, after ours
                lines.append(f'export PYTHONPATH={shlex.quote(value)}"${{PYTHONPATH:+:$PYTHONPATH}}"')
            else:
                lines.append(f"export {name}={shlex.quote(value)}")
        elif style == "dotenv":
            lines.append(f"{name}={value}")
        else:
            lines.append(f"ENV {name}={json.dumps(value)}")
    if env.bin_dir is not None and style == "shell":
        lines.append(f'export PATH={shlex.quote(str(env.bin_dir))}"${{PATH:+:$PATH}}"')
    elif env.bin_dir is not None and style == "dockerfile":
        lines.append(f'ENV PATH="{env.bin_dir}:${{PATH}}"')
    return "\n".join(lines) + "\n"


RUNTIME_FILE = ".metadata/runtime/volume_cli_runtime.py"
BOOT_BYTECODE_BLOCKER = "__pycache__"


def write_boot(layout: VolumeLayout, project: str, python_version: str) -> Path:
    """The project's boot folder (never switched); one read when it is already current."""
    from volume_cli import local_copy, pushed_apply, worker_boot

    folder = boot_path(layout.root, project, python_version)
    try:
        _write_changed(
            [
                (folder / worker_boot.LOCAL_COPY_FILE, Path(local_copy.__file__).read_bytes()),
                (folder / worker_boot.PUSHED_APPLY_FILE, Path(pushed_apply.__file__).read_bytes()),
                # The boot last: a boot that names its sibling never runs without it.
                (folder / "sitecustomize.py", Path(worker_boot.__file__).read_bytes()),
            ],
            blocker=folder / BOOT_BYTECODE_BLOCKER,
        )
    except OSError as exc:
        if (folder / "sitecustomize.py").is_file():
            return folder  # an older boot on a read-only mount still pins; the next install updates it
        raise RootError(
            f"cannot write the worker boot folder {folder}: {exc.strerror or exc}",
            hint="run volume-cli where the volume is writable (a pod), e.g. volume-cli deps install",
        ) from exc
    return folder


def _write_changed(files: list[tuple[Path, bytes]], *, blocker: Path) -> None:
    """Write each of ``files`` whose bytes differ, in order, and the bytecode ``blocker`` if absent.

    Usually all are current: the reads are made at once, one round trip on a
    network volume instead of one per file (every install and no-op pays them).
    """
    from concurrent.futures import ThreadPoolExecutor

    def current(item: tuple[Path, bytes]) -> bool:
        try:
            return item[0].read_bytes() == item[1]
        except OSError:
            return False

    with ThreadPoolExecutor(len(files) + 1) as pool:
        there = pool.submit(blocker.exists)
        same = list(pool.map(current, files))
    for (target, data), unchanged in zip(files, same, strict=True):
        if not unchanged:
            atomic_write_bytes(target, data)
    if not there.result():
        _block_bytecode(blocker)


HUB_VERSION = b"1"


def write_hub_version(layout: VolumeLayout) -> None:
    """``hub/version.txt``: without it transformers 4.x prints its cache-migration notice and writes it from a worker."""
    target = layout.hf_hub_cache / "version.txt"
    try:
        if target.is_file():
            return  # whatever is there, transformers (or a newer hub layout) wrote it on purpose
        atomic_write_bytes(target, HUB_VERSION)
    except OSError:
        pass  # a read-only mount: the next install on a pod writes it


def write_runtime_copy(layout: VolumeLayout) -> Path:
    """Copy ``volume_cli/runtime.py`` onto the volume; one read when it is already current."""
    from concurrent.futures import ThreadPoolExecutor

    from volume_cli import local_copy, pushed_apply, runtime

    target = layout.absolute(RUNTIME_FILE)
    with ThreadPoolExecutor(1) as pool:
        hub = pool.submit(write_hub_version, layout)  # another folder: checked while these are
        _write_changed(
            [
                (target.parent / runtime.LOCAL_COPY_FILE, Path(local_copy.__file__).read_bytes()),
                (target.parent / runtime.PUSHED_APPLY_FILE, Path(pushed_apply.__file__).read_bytes()),
                (target, Path(runtime.__file__).read_bytes()),
            ],
            blocker=target.parent / BOOT_BYTECODE_BLOCKER,
        )
        hub.result()
    return target


def _block_bytecode(blocker: Path) -> None:
    """A plain file where Python would put bytecode: a worker without PYTHONDONTWRITEBYTECODE writes none here.

    ``activate()`` turns bytecode off, but only after its own module was imported (and cached).
    """
    atomic_write_bytes(blocker, b"")
