"""Running uv reproducibly: which binary, which environment, which cache.

uv's behaviour must depend on the project's config only, not on the user's
uv.toml or UV_INDEX_URL: same config + same indexes must give the same lock.

Its network waits are bounded too: uv's own defaults (30 s per read, 3
retries) make an index that never answers cost over two minutes, so every
uv call gets ``UV_HTTP_TIMEOUT`` and ``UV_HTTP_RETRIES`` from the run's
network settings, and a timeout in uv's output becomes an error naming the
index host.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from volume_cli.errors import IndexUnreachableError, InstallError, SubprocessError

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


DEFAULT_HTTP_TIMEOUT = 30.0
DEFAULT_HTTP_RETRIES = 1  # one retry for a blip; a silent index then fails in about 2 x the timeout


@dataclass(frozen=True)
class UvNetwork:
    timeout: float = DEFAULT_HTTP_TIMEOUT  # seconds a request may stay silent
    retries: int = DEFAULT_HTTP_RETRIES

    def environment(self) -> dict[str, str]:
        seconds = str(max(1, math.ceil(self.timeout)))  # uv reads whole seconds only
        return {"UV_HTTP_TIMEOUT": seconds, "UV_HTTP_CONNECT_TIMEOUT": seconds, "UV_HTTP_RETRIES": str(self.retries)}


_NETWORK: ContextVar[UvNetwork | None] = ContextVar("volume_cli_uv_network", default=None)


def _network() -> UvNetwork:
    return _NETWORK.get() or UvNetwork()


@contextmanager
def uv_network(*, timeout: float | None = None, retries: int | None = None) -> Iterator[UvNetwork]:
    """The network bounds of every uv call made inside the block (the CLI's --timeout)."""
    settings = UvNetwork(
        timeout=DEFAULT_HTTP_TIMEOUT if timeout is None else timeout,
        retries=DEFAULT_HTTP_RETRIES if retries is None else retries,
    )
    token = _NETWORK.set(settings)
    try:
        yield settings
    finally:
        _NETWORK.reset(token)


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
    """Local disk, never the volume: uv's cache is many small files and hard links.

    ``UV_CACHE_DIR`` is honoured after our own variable: a pod image that
    warmed uv's cache there should not download the same wheels again.
    """
    environ = os.environ if env is None else env
    for name in (CACHE_ENV, "UV_CACHE_DIR"):
        explicit = environ.get(name, "").strip()
        if explicit:
            return Path(explicit).expanduser()
    xdg = environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "volume-cli" / "uv"


# Index settings people set for pip or uv; every uv call drops them (see _SCRUBBED_PREFIXES), so say so.
IGNORED_INDEX_VARIABLES = (
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
)


def ignored_index_warnings(env: Mapping[str, str] | None = None) -> list[str]:
    """One warning per index variable that is set but has no effect (values are never shown: they may hold a token)."""
    environ = os.environ if env is None else env
    names = [name for name in IGNORED_INDEX_VARIABLES if environ.get(name, "").strip()]
    return [
        f"{name} is set but ignored: each group's index_url decides, else --index-url or VOLUME_CLI_INDEX_URL "
        f'(e.g. export VOLUME_CLI_INDEX_URL="${name}")'
        for name in names
    ]


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
    env.update(_network().environment())
    return env


_URL = re.compile(r"https?://[^\s)`'\"]+")
_TIMED_OUT = re.compile(r"operation timed out|timed out|deadline has elapsed", re.IGNORECASE)
_UNREACHABLE = re.compile(
    r"connection refused|dns error|failed to lookup address|network is unreachable|no route to host|"
    r"connection reset|connection closed before message completed",
    re.IGNORECASE,
)


def raise_for_network(exc: SubprocessError) -> None:
    """Turn a uv failure caused by an index that did not answer into an error naming its host."""
    output = exc.tail
    timed_out = _TIMED_OUT.search(output) is not None
    if not timed_out and _UNREACHABLE.search(output) is None:
        return
    urls = _URL.findall(output)
    host = urlsplit(urls[0]).netloc if urls else "the package index"
    network = _network()
    attempts = network.retries + 1
    what = f"did not answer within {network.environment()['UV_HTTP_TIMEOUT']}s" if timed_out else "could not be reached"
    where = f"; full log: {exc.log_path}" if exc.log_path else ""
    raise IndexUnreachableError(
        f"{host} {what} (uv tried {attempts} time{'s' if attempts != 1 else ''}){where}",
        hint="check the network and the index URL (--index-url / the group's index_url), or raise --timeout",
    ) from exc


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


# Status and progress lines uv prints on the way to an error: they say nothing about the failure.
_NOISE = re.compile(
    r"^\s*(Using (CPython|Python|PyPy)\b|Resolved \d+|Prepared \d+|Installed \d+|Uninstalled \d+|Audited \d+|"
    r"Downloading\b|Downloaded\b|Building\b|Built\b|Updating\b|Updated\b|Checked \d+|Creating virtual|"
    r"warning: `VIRTUAL_ENV=|[⠀-⣿]|░|█)"
)


def error_excerpt(output: str, *, lines: int = 6) -> str:
    """The last ``lines`` lines of uv's output that are about the failure (status lines dropped)."""
    kept = [line for line in output.strip().splitlines() if line.strip() and not _NOISE.match(line)]
    return "\n".join(kept[-lines:])


def registry_hint(output: str, index_urls: Iterable[str]) -> str | None:
    """When uv says a package is not in the registry, the index URL may be what is wrong: name it."""
    if "not found in the package registry" not in output:
        return None
    suspicious = [url for url in dict.fromkeys(index_urls) if not urlsplit(url).path.rstrip("/").endswith("/simple")]
    if not suspicious:
        return None
    return f"check the package name, and the index URL {suspicious[0]} (PyPI-style indexes end in /simple)"
