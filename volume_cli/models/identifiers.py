"""Validation of what hubs, mirrors and manifests tell us, before any of it becomes a path.

A mirror is not trusted: its commit ids, blob ids, file paths and sizes are
checked for being exactly what they claim to be (a commit is 40 hex digits,
a blob id 40 or 64, a file path relative and normalised), so that no answer
can name a folder outside the model's own.
"""

from __future__ import annotations

import re
from typing import Any

from volume_cli.config.model_sources import git_ref_problem
from volume_cli.errors import UnsafeIdentifierError

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_BLOB = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A size no single model file reaches (1 PiB); anything above is a hostile or broken listing.
MAX_FILE_SIZE = 1 << 50
HINT = "the hub or mirror answered something unsafe; nothing was written. Try another endpoint or report the mirror"


def refuse(what: str, value: object) -> UnsafeIdentifierError:
    shown = repr(value)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return UnsafeIdentifierError(f"refused {what} from the hub: {shown}", hint=HINT)


def check_commit(value: Any) -> str:
    """A git commit id: exactly 40 lowercase hex digits."""
    if not isinstance(value, str) or not _COMMIT.match(value):
        raise refuse("commit id", value)
    return value


def check_blob_id(value: Any) -> str:
    """A git blob id (40 hex) or an LFS sha256 (64 hex); lowercased, as the HF cache names blobs."""
    if not isinstance(value, str) or not _BLOB.match(value.lower()):
        raise refuse("blob id", value)
    return value.lower()


def check_sha256(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.match(value.lower()):
        raise refuse("sha256", value)
    return value.lower()


def check_size(value: Any) -> int:
    """A file size: a non-negative integer (an int or a string of digits) below ``MAX_FILE_SIZE``."""
    if isinstance(value, bool):
        raise refuse("file size", value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_FILE_SIZE:
        raise refuse("file size", value)
    return value


def check_repo_path(value: Any) -> str:
    """A file path inside a repository: relative, normalised, '/'-separated, no '..', no control characters."""
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise refuse("file path", value)
    parts = value.split("/")
    if (
        value.startswith("/")
        or "\\" in value
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(char) < 32 or ord(char) == 127 for char in value)
        or re.match(r"^[A-Za-z]:", value)  # a Windows drive, in case the cache is ever read there
    ):
        raise refuse("file path", value)
    return value


def check_revision(value: Any) -> str:
    """A branch, tag or commit name from a hub (ModelScope's per-file ``Revision``)."""
    if not isinstance(value, str) or git_ref_problem(value) is not None:
        raise refuse("revision", value)
    return value


def check_subfolder(parent: str | None, value: Any) -> str:
    """A folder a listing says is inside ``parent``: strictly below it, so walking the listing always ends."""
    path = check_repo_path(value)
    if parent is not None and not path.startswith(parent + "/"):
        raise refuse(f"sub-folder of {parent!r}", value)
    return path
