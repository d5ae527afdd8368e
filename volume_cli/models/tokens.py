"""Hub credentials: read where the clients keep them, sent only to the hub's own host, never stored.

Tokens never appear in a manifest, a log line or an error message: they go
into request headers for the endpoint's host only (``requests`` drops the
Authorization header and our Cookie header when a redirect leaves the host).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit


def _read_token_file(path: Path) -> str | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value or None


def hf_token(env: Mapping[str, str]) -> str | None:
    """HF_TOKEN, then the token file ``hf auth login`` wrote."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = env.get(name, "").strip()
        if value:
            return value
    candidates = []
    if env.get("HF_TOKEN_PATH"):
        candidates.append(Path(env["HF_TOKEN_PATH"]).expanduser())
    if env.get("HF_HOME"):
        candidates.append(Path(env["HF_HOME"]).expanduser() / "token")
    candidates.append(Path(env.get("HOME", str(Path.home()))) / ".cache" / "huggingface" / "token")
    for path in candidates:
        token = _read_token_file(path)
        if token:
            return token
    return None


def modelscope_token(env: Mapping[str, str]) -> str | None:
    """MODELSCOPE_API_TOKEN, then the session a ``modelscope login`` saved.

    The saved session is a pickled cookie jar, so it is read through the
    ModelScope client itself (imported lazily, only on a download that
    needs a token and only when the file exists).
    """
    value = env.get("MODELSCOPE_API_TOKEN", "").strip()
    if value:
        return value
    cookies = Path(env.get("HOME", str(Path.home()))) / ".modelscope" / "credentials" / "cookies"
    if not cookies.is_file():
        return None
    try:
        from modelscope_hub.api import HubApi

        jar = HubApi().get_cookies()
    except Exception:  # an unreadable session is the same as none: public models still work
        return None
    if jar is None:
        return None
    session = jar.get("m_session_id")
    return str(session) if session else None


def auth_headers(source: str, endpoint: str, url: str, token: str | None) -> dict[str, str]:
    """Credentials for ``url`` only when it is on the endpoint's own host."""
    if not token or urlsplit(url).netloc.rpartition("@")[2] != urlsplit(endpoint).netloc.rpartition("@")[2]:
        return {}
    if source == "modelscope":
        return {"Authorization": f"Bearer {token}", "Cookie": f"m_session_id={token}"}
    return {"Authorization": f"Bearer {token}"}
