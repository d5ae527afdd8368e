"""volume-cli worker boot: pins this process to ONE dependency generation.

volume-cli copies this file (standard library only) to
``python-deps/pyX.Y/.boot/<project>/sitecustomize.py`` on the volume, and
``volume-cli env`` puts that folder on PYTHONPATH instead of the switchable
link ``python-deps/pyX.Y/<project>``. Why: a PYTHONPATH entry that is a
symlink is resolved again on every import, so a process that imports ``a``
before an install switches the link and ``b`` after it runs a mix of two
generations. Here the link is resolved once, at start-up: the resolved
generation takes the boot folder's place on ``sys.path`` for the whole life
of the process (gc keeps old generations for a grace period). It is imported
from a copy on the worker's local disk when one can be made
(``volume_cli_local_copy.py`` beside this file: see volume_cli/local_copy.py),
else from the volume.

``site`` imports ``sitecustomize`` after PYTHONPATH is on ``sys.path`` and
ahead of site-packages, so this file wins; it then runs the next
``sitecustomize`` on ``sys.path`` (the generation's or the image's), so an
image's own one keeps working. ``python -S`` skips ``site``: the boot folder
holds no packages, so imports from the volume fail instead of mixing.
``python -I`` / ``-E`` ignore PYTHONPATH altogether.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType  # importlib.util imports it anyway

# A copy of volume_cli.runtime.LOCAL_CACHES (this file is standard-library
# only and copied alone): what libraries write at run time goes to local
# disk, not into the volume, unless the worker already chose a place.
LOCAL_CACHE_ENV = "VOLUME_CLI_LOCAL_CACHE"
LOCAL_CACHE_DEFAULT = "/tmp/volume-cli-cache"
LOCAL_CACHES = {
    "NUMBA_CACHE_DIR": "numba",
    "HF_MODULES_CACHE": "hf-modules",
    "HF_DATASETS_CACHE": "hf-datasets",
    "HF_ASSETS_CACHE": "hf-assets",
    "HF_XET_CACHE": "hf-xet",
    "MODELSCOPE_INDEX_FILE": "modelscope/ast_indexer",
}
TOKEN_PATHS = {"HF_TOKEN_PATH": "~/.cache/huggingface/token"}
# volume_cli/local_copy.py, copied beside this file.
LOCAL_COPY_FILE = "volume_cli_local_copy.py"
# volume_cli/pushed_apply.py, copied beside this file: applies a generation `sync push` left pending.
PUSHED_APPLY_FILE = "volume_cli_pushed_apply.py"
# Under the local cache: the compiled copy code (_run_sibling).
BOOT_CODE = "boot-code"


def _pin(boot_folder: str) -> int:
    """Replace the boot folder on sys.path by the resolved generation; its index."""
    project = os.path.basename(boot_folder)
    link = os.path.join(os.path.dirname(os.path.dirname(boot_folder)), project)
    positions = [index for index, item in enumerate(sys.path) if os.path.abspath(item or ".") == boot_folder]
    position = positions[0] if positions else 0
    sys.path[:] = [item for index, item in enumerate(sys.path) if index not in positions]
    # After the boot folder left sys.path: the apply's imports then never look it up on the volume.
    _apply_pushed(boot_folder, project)
    generation = os.path.realpath(link)
    if os.path.isdir(generation):
        sys.path.insert(position, _local_copy(boot_folder, generation, project))
    else:
        sys.stderr.write(
            f"volume-cli: {link} does not lead to an installed generation; nothing from the volume is importable "
            f"(next: on a pod with the volume: volume-cli deps install --project {project})\n"
        )
    return position


def _apply_pushed(boot_folder: str, project: str) -> None:
    """Before the link is resolved: apply a pushed generation that is pending (once, under the project's lock).

    One listing when nothing is pending; the apply code is only read from the
    volume when something is. $VOLUME_CLI_APPLY_ON_START=0 turns it off.
    """
    if os.environ.get("VOLUME_CLI_APPLY_ON_START", "").strip() == "0":
        return
    python_dir = os.path.dirname(os.path.dirname(boot_folder))
    root = os.path.dirname(os.path.dirname(python_dir))
    try:
        with os.scandir(os.path.join(root, ".metadata", "projects", project, "pushed")) as listing:
            if not any(entry.name.endswith(".json") for entry in listing):
                return
    except OSError:
        return
    import importlib.util

    path = os.path.join(boot_folder, PUSHED_APPLY_FILE)
    spec = importlib.util.spec_from_file_location("volume_cli_pushed_apply", path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        return  # a boot written by an older volume-cli: sync apply on a pod applies it
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        module.log_apply_on_start(root, project, os.path.basename(python_dir)[len("py") :])
    except Exception as exc:  # never a worker without its packages for want of an update
        sys.stderr.write(f"volume-cli: the pushed generation of {project} was not applied: {exc!r}\n")


def _local_copy(boot_folder: str, generation: str, project: str) -> str:
    """The generation's copy on local disk (made now if needed), else the generation on the volume.

    The copy code is a sibling file (``volume_cli.local_copy``), loaded by path: the
    boot folder leaves ``sys.path`` and a boot written by an older install has none.
    """
    path = os.path.join(boot_folder, LOCAL_COPY_FILE)
    python_version = os.path.basename(os.path.dirname(os.path.dirname(boot_folder)))[len("py") :]
    cache = os.environ.get(LOCAL_CACHE_ENV) or LOCAL_CACHE_DEFAULT
    try:
        # Read once, not looked up first: each lookup is a round trip on the volume.
        module = _run_sibling(path, "volume_cli_local_copy", cache)
        pinned: str = module.local_generation(generation, project=project, python_version=python_version, cache=cache)
    except Exception as exc:  # never a worker without its packages for want of a speed-up
        if not (isinstance(exc, FileNotFoundError) and exc.filename == path):  # else: an older boot, no copy code
            sys.stderr.write(f"volume-cli: importing from the volume, not a local copy: {exc!r}\n")
        return generation
    return pinned


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


def _chain(start: int) -> None:
    """Run the sitecustomize this one shadows, as if it had been imported first."""
    import importlib.util
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("sitecustomize", sys.path[start:])
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def boot(boot_folder: str) -> None:
    # Store entries are shared and immutable: no bytecode is written into
    # them, even when the image did not set PYTHONDONTWRITEBYTECODE.
    sys.dont_write_bytecode = True
    local = os.environ.get(LOCAL_CACHE_ENV) or LOCAL_CACHE_DEFAULT
    for name, relative in LOCAL_CACHES.items():
        os.environ.setdefault(name, os.path.join(local, relative))
    for name, path in TOKEN_PATHS.items():
        os.environ.setdefault(name, path)
    _chain(_pin(os.path.abspath(boot_folder)))


if __name__ == "sitecustomize":
    boot(os.path.dirname(os.path.abspath(__file__)))
