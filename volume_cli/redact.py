"""Credentials out of everything shown or stored: one function for URLs, one for free text.

Like pip, a password in a URL is shown as ``****``; query parameters that
carry a credential (``token``, ``sig``, ``X-Amz-Signature``...) keep their
name and lose their value, so a message still says which URL it was.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "****"
# Lowercased query parameter names whose value is a credential (S3, GCS, Azure SAS, hubs, CDNs).
_SENSITIVE_EXACT = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth",
        "authorization",
        "api_key",
        "apikey",
        "api-key",
        "key",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "pwd",
        "sig",
        "signature",
        "credential",
        "session",
        "session_id",
        "sessionid",
    }
)
_SENSITIVE_PREFIXES = ("x-amz-", "x-goog-", "x-oss-", "x-cos-")
_SENSITIVE_SUFFIXES = ("token", "secret", "password", "signature", "_key", "-key")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_LOOSE_PARAM = re.compile(r"([?&;]([A-Za-z0-9_.-]+)=)(?!\*\*\*\*)[^&\s'\"<>#]+")


def _sensitive(name: str) -> bool:
    lowered = name.lower()
    return (
        lowered in _SENSITIVE_EXACT or lowered.startswith(_SENSITIVE_PREFIXES) or lowered.endswith(_SENSITIVE_SUFFIXES)
    )


def _redact_query(query: str) -> str:
    pieces = []
    for piece in query.split("&"):
        name, sep, value = piece.partition("=")
        pieces.append(f"{name}={MASK}" if sep and value and _sensitive(name) else piece)
    return "&".join(pieces)


def redact_url(url: str) -> str:
    """``url`` without a password (``user:****@``) or credential query values; other text unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _password = userinfo.partition(":")
        # A lone userinfo is usually a token (https://TOKEN@host): mask it too.
        netloc = f"{user}:{MASK}@{host}" if has_password else f"{MASK}@{host}"
    query = _redact_query(parts.query) if parts.query else parts.query
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_match(match: re.Match[str]) -> str:
    url = match.group(0)
    kept = url.rstrip(".,:;)]}")  # punctuation of the sentence around the URL stays outside it
    return redact_url(kept) + url[len(kept) :]


def _redact_param(match: re.Match[str]) -> str:
    return f"{match.group(1)}{MASK}" if _sensitive(match.group(2)) else match.group(0)


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted (error messages, warnings, JSON values).

    Query parameters outside a full URL are caught too: ``requests`` names
    only the path and query in some errors ("Max retries exceeded with url: /f?token=...").
    """
    if "://" in text:
        text = _URL_IN_TEXT.sub(_redact_match, text)
    if "=" in text:
        text = _LOOSE_PARAM.sub(_redact_param, text)
    return text


def strip_credentials(url: str) -> str:
    """``url`` with no userinfo at all: what is stored on the volume (an origin, a manifest's model id)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = _redact_query(parts.query) if parts.query else parts.query
    return urlunsplit((parts.scheme, host, parts.path, query, parts.fragment))


def printable(text: str) -> str:
    """``text`` safe for one terminal message: control characters shown escaped, continuation lines indented.

    Hub answers end up in messages (a mirror's error text); a newline there
    must not be able to start a line of its own ("next: curl ... | sh") and an
    escape sequence must not repaint the terminal.
    """
    cleaned = "".join(char if char == "\n" or char.isprintable() else f"\\x{ord(char):02x}" for char in text)
    return cleaned.replace("\n", "\n  ")


def shown(text: str) -> str:
    """What every ``error:``/``warning:`` line prints: credentials masked, control characters neutralised."""
    return printable(redact_text(text))
