"""Running uv reproducibly: which binary, which environment, which cache.

uv's behaviour must depend on the project's config only, not on the user's
uv.toml or UV_INDEX_URL: same config + same indexes must give the same lock.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from volume_cli.errors import InstallError

CACHE_ENV = "VOLUME_CLI_UV_CACHE"

# Settings that would change what uv resolves or where it looks.
_SCRUBBED_PREFIXES = (
    "UV_INDEX",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "UV_CONFIG_FILE",
)
_SCRUBBED = {
    "UV_PYTHON",
    "UV_SYSTEM_PYTHON",
    "UV_TARGET",
    "UV_PREFIX",
    "UV_NO_CACHE",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "UV_LINK_MODE",
    "UV_COMPILE_BYTECODE",
}


def uv_binary() -> str:
    """The uv shipped as a dependency of volume-cli, else the one on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise InstallError("uv is not installed", hint="pip install 'uv>=0.8'") from None
        return found


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Local disk, never the volume: uv's cache is many small files and hard links."""
    environ = os.environ if env is None else env
    explicit = environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "volume-cli" / "uv"


def uv_environment(*, cache_dir: Path, config_home: Path) -> dict[str, str]:
    """The environment for every uv call: isolated config, local cache, no Python downloads."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SCRUBBED and not key.startswith(_SCRUBBED_PREFIXES)
    }
    env.update(
        UV_PYTHON_DOWNLOADS="never",
        UV_CACHE_DIR=str(cache_dir),
        # uv reads user and system uv.toml from these; point them at an empty folder.
        XDG_CONFIG_HOME=str(config_home),
        XDG_CONFIG_DIRS=str(config_home),
        UV_NO_PROGRESS="1",
        NO_COLOR="1",
    )
    return env


# uv names the culprit in a few stable phrasings; the first match wins.
_CULPRIT_PATTERNS = (
    re.compile(r"Because (?:only |all versions of |there (?:is|are) no versions? of )?([A-Za-z0-9][A-Za-z0-9._-]*)"),
    re.compile(r"Failed to (?:download|build|fetch|prepare|install|resolve|read|extract|parse)[^`]*`([^`]+)`"),
    re.compile(r"(?:No solution found when resolving|Failed to resolve)[^:]*: `?([A-Za-z0-9][A-Za-z0-9._-]*)"),
)


def failing_package(output: str, candidates: Iterable[str] = ()) -> str | None:
    """The package uv's error output blames, or None."""
    for pattern in _CULPRIT_PATTERNS:
        for match in pattern.finditer(output):
            name = re.split(r"[=<>!~ @\[;]", match.group(1).strip(), maxsplit=1)[0]
            if name and name not in {"your", "the", "you"}:
                return name
    lowered = output.lower()
    for name in candidates:
        if re.search(rf"(?<![a-z0-9_-]){re.escape(name.lower())}(?![a-z0-9_-])", lowered):
            return name
    return None
