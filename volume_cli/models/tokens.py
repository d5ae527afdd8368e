"""Hub credentials: read where the clients keep them, sent only to the hub's own host, never stored.

Tokens never appear in a manifest, a log line or an error message: they go
into request headers for the endpoint's host only (``requests`` drops the
Authorization header and our Cookie header when a redirect leaves the host).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

# Variables that decide where the hub clients keep a saved login: when the caller's env agrees with the
# process environment on all of them, the official client (which read them at import) is asked.
_HF_LOCATION = ("HF_TOKEN_PATH", "HF_HOME", "XDG_CACHE_HOME", "HOME")
_MODELSCOPE_LOCATION = ("MODELSCOPE_CREDENTIALS_PATH", "MODELSCOPE_HOME", "HOME")


def _read_token_file(path: Path) -> str | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value or None


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or str(Path.home())).expanduser()


def _same_as_process(env: Mapping[str, str], names: tuple[str, ...]) -> bool:
    return all(env.get(name) == os.environ.get(name) for name in names)


def hf_token_path(env: Mapping[str, str]) -> Path:
    """Where ``hf auth login`` keeps the active token: huggingface_hub's own rule (HF_TOKEN_PATH, HF_HOME, XDG)."""
    if env.get("HF_TOKEN_PATH"):
        return Path(os.path.expandvars(env["HF_TOKEN_PATH"])).expanduser()
    if env.get("HF_HOME"):
        return Path(os.path.expandvars(env["HF_HOME"])).expanduser() / "token"
    cache = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else _home(env) / ".cache"
    return cache / "huggingface" / "token"


def hf_token(env: Mapping[str, str]) -> str | None:
    """HF_TOKEN, then the login saved by ``hf auth login``, as ``huggingface_hub.get_token()`` finds it."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = env.get(name, "").strip()
        if value:
            return value
    path = hf_token_path(env)
    if _same_as_process(env, _HF_LOCATION):
        # Imported only here (a download that may need a token): `--help` and `status` stay fast.
        from huggingface_hub import constants, get_token

        if Path(constants.HF_TOKEN_PATH) == path:  # its import-time view still matches this environment
            try:
                return get_token()
            except Exception:  # a failed OIDC exchange or refresh: the file as it is, public repos still work
                return _read_token_file(path)
    return _read_token_file(path)


def modelscope_cookies_path(env: Mapping[str, str]) -> Path | None:
    """The cookie jar ``modelscope login`` saved (every SDK since 1.x writes ``<dir>/credentials/cookies``)."""
    folders = []
    if env.get("MODELSCOPE_CREDENTIALS_PATH"):  # modelscope < 1.38
        folders.append(Path(env["MODELSCOPE_CREDENTIALS_PATH"]).expanduser())
    if env.get("MODELSCOPE_HOME"):  # modelscope >= 1.38 (modelscope_hub)
        folders.append(Path(env["MODELSCOPE_HOME"]).expanduser() / "credentials")
    folders.append(_home(env) / ".modelscope" / "credentials")
    for folder in folders:
        if (folder / "cookies").is_file():
            return folder / "cookies"
    return None


class _CookieJarUnpickler(pickle.Unpickler):
    """The saved login is a pickled requests cookie jar: load those classes and nothing else."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("requests.cookies", "RequestsCookieJar"),
            ("http.cookiejar", "Cookie"),
            ("http.cookiejar", "DefaultCookiePolicy"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a saved ModelScope login")
        return super().find_class(module, name)


def _session_from_jar(jar: Any) -> str | None:
    for cookie in jar or ():
        if getattr(cookie, "name", None) == "m_session_id" and not cookie.is_expired():
            return str(cookie.value) or None
    return None


def _official_modelscope_jar(path: Path, env: Mapping[str, str]) -> Any:
    """ModelScope's own reader, when it reads this very file (``modelscope.hub.api`` exists in every version)."""
    if not _same_as_process(env, _MODELSCOPE_LOCATION) or any(env.get(name) for name in _MODELSCOPE_LOCATION[:2]):
        return None  # only the default place is read alike by every version (the overrides moved in 1.38)
    from modelscope.hub.api import ModelScopeConfig

    if Path(ModelScopeConfig.path_credential).expanduser() / "cookies" != path:
        return None
    return ModelScopeConfig.get_cookies()


def modelscope_token(env: Mapping[str, str]) -> str | None:
    """MODELSCOPE_API_TOKEN, then the unexpired session a ``modelscope login`` saved.

    The session is read through ModelScope's own client when it reads the
    same file; else (another HOME than the process's, or the client's layout
    moved between versions) the jar is loaded with an unpickler that accepts
    cookie classes only.
    """
    value = env.get("MODELSCOPE_API_TOKEN", "").strip()
    if value:
        return value
    path = modelscope_cookies_path(env)
    if path is None:
        return None
    try:
        jar = _official_modelscope_jar(path, env)
        if jar is None:
            with path.open("rb") as handle:
                jar = _CookieJarUnpickler(handle).load()
        return _session_from_jar(jar)
    except Exception:  # an unreadable session is the same as none: public models still work
        return None


def auth_headers(source: str, endpoint: str, url: str, token: str | None) -> dict[str, str]:
    """Credentials for ``url`` only when it is on the endpoint's own host."""
    if not token or urlsplit(url).netloc.rpartition("@")[2] != urlsplit(endpoint).netloc.rpartition("@")[2]:
        return {}
    if source == "modelscope":
        return {"Authorization": f"Bearer {token}", "Cookie": f"m_session_id={token}"}
    return {"Authorization": f"Bearer {token}"}
