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
while it runs), imported from its copy on local disk when one can be made
(volume_cli/local_copy.py), and sets the model cache variables. Anything missing fails
with one message naming the command to run on a pod.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

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


# volume_cli/local_copy.py; beside the runtime copy on the volume, under this name.
LOCAL_COPY_FILE = "volume_cli_local_copy.py"
# Under the local cache: the compiled code of that sibling (_run_sibling), as worker_boot.BOOT_CODE.
BOOT_CODE = "boot-code"


# volume_cli/pushed_apply.py; beside the runtime copy on the volume, under this name.
PUSHED_APPLY_FILE = "volume_cli_pushed_apply.py"
_APPLIED: set[tuple[str, str]] = set()  # (root, project) a pending push was looked for in this process


def _apply_pushed(root: Path, project: str) -> None:
    """Apply a generation ``sync push`` left pending, once per process, before the current one is read."""
    if (str(root), project) in _APPLIED:
        return
    _APPLIED.add((str(root), project))
    if os.environ.get("VOLUME_CLI_APPLY_ON_START", "").strip() == "0":
        return
    try:  # one listing when nothing is pending: the apply code (and what it imports) is loaded only when needed
        with os.scandir(root / ".metadata" / "projects" / project / "pushed") as listing:
            if not any(entry.name.endswith(".json") for entry in listing):
                return
    except OSError:
        return
    try:
        from volume_cli import pushed_apply
    except ImportError:
        import importlib.util

        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), PUSHED_APPLY_FILE)
        spec = importlib.util.spec_from_file_location("volume_cli_pushed_apply", path)
        if spec is None or spec.loader is None or not os.path.isfile(path):
            return  # a copy written by an older volume-cli: sync apply on a pod applies it
        pushed_apply = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(pushed_apply)
        except Exception as exc:  # never a failed activation for want of an update
            sys.stderr.write(f"volume-cli: the pushed generation of {project} was not applied: {exc!r}\n")
            return
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    pushed_apply.log_apply_on_start(str(root), project, running)


_LOADED: list[Any] = []  # the local-copy module, loaded once per process (activate() may run per request)


def _local_copy_module(local_cache: Path) -> Any:
    """volume_cli.local_copy, or its copy beside this file (the standalone runtime), or None (an older volume)."""
    if not _LOADED:
        _LOADED.append(_load_local_copy(local_cache))
    return _LOADED[0]


def _load_local_copy(local_cache: Path) -> Any:
    try:
        from volume_cli import local_copy

        return local_copy
    except ImportError:
        pass
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), LOCAL_COPY_FILE)
    try:  # read once, not looked up first; missing from an older volume: None, as any failure
        return _run_sibling(path, "volume_cli_local_copy", str(local_cache))
    except Exception:
        return None  # the volume path then: never a failed activation for want of a speed-up


def _run_sibling(path: str, name: str, cache: str) -> ModuleType:
    """Run the file ``path`` as a new module ``name``, its compiled code kept on local disk.

    Compiling volume_cli_local_copy.py took 16-31 ms at every start: the boot
    folder's ``__pycache__`` is a file, so that no worker writes bytecode onto
    the volume. The code is kept under ``cache`` instead, with the path and
    source it was compiled from, and used only when they are the ones read now
    (for this interpreter's magic number and -O), so a changed source never
    runs stale code; a kept file that is missing, torn or unwritable only means
    compiling again. No hashlib: importing it (OpenSSL) costs what is saved.
    volume_cli/worker_boot.py and volume_cli/runtime.py each hold this
    function (each is copied onto the volume alone); a test holds them equal.
    """
    import importlib.util
    import marshal
    import zlib

    with open(path, "rb") as stream:
        source = stream.read()
    # The code names its file (tracebacks): the same source at another path is another entry.
    checksum = zlib.crc32(source, zlib.crc32(os.fsencode(path)))
    kept = os.path.join(
        cache, BOOT_CODE, f"{name}.{sys.implementation.cache_tag}.opt{sys.flags.optimize}.{checksum:08x}"
    )
    head = importlib.util.MAGIC_NUMBER + os.fsencode(path) + b"\0" + len(source).to_bytes(8, "little") + source
    code = None
    try:
        with open(kept, "rb") as stream:
            data = stream.read()
        body = data[len(head) + 4 :]
        if data.startswith(head) and data[len(head) : len(head) + 4] == zlib.crc32(body).to_bytes(4, "little"):
            code = marshal.loads(body)
    except (OSError, ValueError, EOFError, TypeError):
        pass
    if code is None:
        code = compile(source, path, "exec", dont_inherit=True)
        body = marshal.dumps(code)
        temp = f"{kept}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(kept), exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC  # never through a link left there
            with os.fdopen(os.open(temp, flags, 0o644), "wb") as stream:
                stream.write(head + zlib.crc32(body).to_bytes(4, "little") + body)
            os.replace(temp, kept)
        except OSError:  # compiled again next time; a full disk keeps no partial file
            try:
                os.unlink(temp)
            except OSError:
                pass
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ImportError(f"{path} is not a Python source file")
    module = importlib.util.module_from_spec(spec)
    exec(code, module.__dict__)
    return module


class ActivationError(_Base):
    """Deps or models are missing or do not fit this worker."""

    def __str__(self) -> str:
        return f"{self.message} (next: {self.hint})" if self.hint else self.message


LOCAL_CACHE_ENV = "VOLUME_CLI_LOCAL_CACHE"
LOCAL_CACHE_DEFAULT = "/tmp/volume-cli-cache"

# What libraries write while a worker runs, moved to the worker's local disk.
# Their defaults are inside the volume (next to an installed package, or
# under HF_HOME / MODELSCOPE_CACHE): shared by every worker, immutable, and a
# network round trip per file. Left alone, because their defaults are
# already local (home or /tmp): MPLCONFIGDIR, TRITON_CACHE_DIR,
# TORCHINDUCTOR_CACHE_DIR, TORCH_EXTENSIONS_DIR, CUPY_CACHE_DIR,
# PYTORCH_KERNEL_CACHE_PATH; XDG_CACHE_HOME is not set, it would move far
# more than these.
LOCAL_CACHES = {
    # numba (librosa, umap...) writes @jit(cache=True) files into __pycache__ beside the module: a store entry
    "NUMBA_CACHE_DIR": "numba",
    # transformers copies trust_remote_code modules here; default HF_HOME/modules
    "HF_MODULES_CACHE": "hf-modules",
    # datasets writes processed Arrow files here, guarded by flock (untrustworthy on the volume); default HF_HOME/datasets
    "HF_DATASETS_CACHE": "hf-datasets",
    # huggingface_hub.cached_assets_path, used by libraries for derived files; default HF_HOME/assets
    "HF_ASSETS_CACHE": "hf-assets",
    # xet chunk cache of a download a worker makes; default HF_HOME/xet
    "HF_XET_CACHE": "hf-xet",
    # modelscope up to 1.2x rewrites its ast_indexer into MODELSCOPE_CACHE; an absolute name wins over the folder
    "MODELSCOPE_INDEX_FILE": "modelscope/ast_indexer",
}


# A login on a machine that evaluated `env` would store the hub token under
# HF_HOME, on the shared volume: credentials stay in the home folder (the
# hub client expands "~" itself, on the machine that reads it).
TOKEN_PATHS = {"HF_TOKEN_PATH": "~/.cache/huggingface/token"}


def local_cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where a worker keeps what it writes: ``explicit``, else $VOLUME_CLI_LOCAL_CACHE, else /tmp."""
    return Path(explicit or os.environ.get(LOCAL_CACHE_ENV) or LOCAL_CACHE_DEFAULT)


def local_cache_variables(local: Path) -> dict[str, str]:
    return {name: str(local / relative) for name, relative in LOCAL_CACHES.items()}


def cache_variables(root: Path, local: Path | None = None) -> dict[str, str]:
    """Model cache variables for a volume seen at ``root``, read-only bytecode, local run-time caches.

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
        **local_cache_variables(local or local_cache_dir()),
        **TOKEN_PATHS,
    }


def deps_path(root: Path, project: str, python_version: str) -> Path:
    return root / "python-deps" / f"py{python_version}" / project


def boot_path(root: Path, project: str, python_version: str) -> Path:
    """The folder ``env`` puts on PYTHONPATH: its sitecustomize pins one generation per process."""
    return root / "python-deps" / f"py{python_version}" / ".boot" / project


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


def _safe_key(key: str) -> str:
    # The models engine's manifest file name (volume_cli.models.manifest.safe_key), without importing it.
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "--", key).strip("-.")[:80]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _model_problem(root: Path, key: str) -> str | None:
    """Why model ``key`` is not usable on the volume, or None; one stat per file, no hashing."""
    try:
        manifest = json.loads((root / ".metadata" / "models" / f"{_safe_key(key)}.json").read_text())
        files_root = root / manifest["files_root"]
        files = [(str(item["path"]), int(item["size"])) for item in manifest["files"]]
    except FileNotFoundError:
        return f"{key} is not on the volume (removed?)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{key}: unreadable manifest ({exc})"
    if manifest.get("damaged"):
        return f"{key}: damaged file {manifest['damaged'][0]}"
    for path, size in files:
        try:
            found = os.stat(files_root / path).st_size
        except OSError:
            return f"{key}: {path} is missing"
        if found != size:
            return f"{key}: {path} has {found} bytes, expected {size}"
    return None


def missing_models(root: Path, model_keys: list[str]) -> list[str]:
    """One line per recorded model whose files are not all present with their recorded sizes."""
    return [problem for key in model_keys if (problem := _model_problem(root, key)) is not None]


def _hook_problem(project: str, state: dict[str, object]) -> tuple[str, str] | None:
    """A failed (or killed) after_install hook of the current generation: the worker may not work."""
    hook, deps = state.get("after_install"), state.get("deps")
    if not isinstance(hook, dict) or not isinstance(deps, dict) or hook.get("ok"):
        return None
    if hook.get("generation") != deps.get("generation"):
        return None
    why = hook.get("error") or "it did not finish (killed?)"
    return (
        f"the after_install hook of {project!r} failed for generation {hook.get('generation')}: {why}",
        f"fix the project's after_install hook, then: volume-cli deps install --project {project}",
    )


def _broken_links(generation: Path) -> list[str]:
    broken = []
    for folder, folders, files in os.walk(generation):  # real folders only: links are not descended
        for name in (*folders, *files):
            path = os.path.join(folder, name)
            if os.path.islink(path) and not os.path.exists(path):
                broken.append(os.path.relpath(path, generation))
    return sorted(broken)


def _check_deps(
    project: str, link: Path, recorded: bool, problems: list[tuple[str, str]], *, check_links: bool
) -> Path | None:
    """The resolved current generation, or None with the reason appended to ``problems``."""
    install = f"volume-cli deps install --project {project}"
    if not recorded:
        problems.append((f"dependencies of {project!r} are not installed", install))
        return None
    resolved = Path(os.path.realpath(link))
    if not resolved.is_dir():
        problems.append((f"dependencies of {project!r} are missing at {link}", install))
        return None
    broken = _broken_links(resolved) if check_links else []
    if broken:
        more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
        problems.append(
            (
                f"dependencies of {project!r} are damaged: {broken[0]} leads to a missing file{more}",
                f"{install} --force",
            )
        )
    return resolved


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


def inspect(
    project: str,
    root: str | os.PathLike[str] | None = None,
    *,
    require_models: bool = True,
    models_hash: str | None = None,
    check_links: bool = False,
) -> Inspection:
    """Read the project's records on the volume and check them against the files.

    ``models_hash`` (the project definition's, when the caller has it): a
    model list changed since the last download is not complete either.
    ``check_links`` (doctor): every link of the generation leads to a file,
    one stat each; left out at worker start-up, where it would cost a round
    trip per distribution.
    """
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
    # The link is the truth: a first install killed right after its switch has no record yet but works.
    recorded = bool(state.get("deps")) or (os.path.islink(link) and os.path.isdir(link))
    generation = _check_deps(project, link, recorded, problems, check_links=check_links)
    hook_problem = _hook_problem(project, state)
    if hook_problem is not None:
        problems.append(hook_problem)
    models = state.get("models")
    missing = missing_models(volume, list(models.get("model_keys", []))) if models else []
    if models and models_hash is not None and models.get("config_hash") != models_hash:
        missing.insert(0, "the project's model list changed since the last download")
    models_complete = bool(models) and not missing
    if require_models and not models_complete:
        download = f"volume-cli models download --project {project}"
        if not models:
            problems.append((f"models of {project!r} were never downloaded", download))
        else:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            problems.append((f"models of {project!r} are incomplete: {missing[0]}{more}", download))
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


def _pin_sys_path(resolved: Path, link: Path, boot: Path, local_cache: Path) -> Path:
    """Put one generation on sys.path for the life of this process; the folder it imports from.

    That folder is the generation's copy on local disk when one can be made
    (see volume_cli/local_copy.py), else the generation on the volume. A
    process the boot folder already pinned, or that activated before, may
    have imported modules from that generation: switching it to a newer one
    now would mix the two, so it stays.
    """
    generations = os.path.realpath(link.parent / ".generations" / link.name)
    copies = _local_copy_module(local_cache)
    pinned = next(
        (item for item in sys.path if item and _generation_of(item, copies, local_cache) == generations), None
    )
    if pinned and os.path.isdir(pinned):
        entry = Path(pinned)
    elif copies is not None:
        python_version = link.parent.name[len("py") :]
        folder = copies.local_generation(
            str(resolved), project=link.name, python_version=python_version, cache=str(local_cache)
        )
        entry = Path(folder)
    else:
        entry = resolved
    # Neither the switchable link nor the boot folder may stay: both are
    # looked up again on every import.
    dropped = {str(link), str(boot), str(entry), os.path.realpath(entry)}
    sys.path[:] = [item for item in sys.path if item not in dropped]
    sys.path.insert(0, str(entry))
    return entry


def _generation_of(item: str, copies: Any, local_cache: Path) -> str:
    """The generations folder of the project whose generation ``item`` is, or is a local copy of."""
    is_local = copies is not None and os.path.abspath(item).startswith(os.path.abspath(local_cache) + os.sep)
    source = copies.copy_source(item) if is_local else None
    # Only a generation folder itself counts, never a link that leads to one.
    folder = source or os.path.abspath(item)
    return os.path.realpath(os.path.dirname(folder))


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
    local_cache: str | os.PathLike[str] | None = None,
) -> Activation:
    """Put the project's current generation on sys.path and set the cache variables.

    ``local_cache`` (else $VOLUME_CLI_LOCAL_CACHE, else /tmp/volume-cli-cache)
    holds what libraries write at run time; a variable of ``LOCAL_CACHES``
    the worker already set to a path off the volume is kept.
    """
    _apply_pushed(find_root(root), project)
    found = inspect(project, root, require_models=require_models)
    if found.problems:
        message, hint = found.problems[0]
        raise ActivationError(f"volume-cli: {message}", hint=f"on a pod with the volume: {hint}")
    assert found.deps_generation is not None and found.python_version is not None and found.deps_link is not None
    sys.dont_write_bytecode = True
    local = local_cache_dir(local_cache)
    boot = boot_path(found.root, project, found.python_version)
    entry = _pin_sys_path(found.deps_generation, found.deps_link, boot, local)
    environment = cache_variables(found.root, local)
    volume = os.path.realpath(found.root) + os.sep
    for name in (*LOCAL_CACHES, *TOKEN_PATHS):
        already = os.path.expanduser(os.environ.get(name) or "")
        if os.path.isabs(already) and not os.path.realpath(already).startswith(volume):
            environment[name] = os.environ[name]
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
