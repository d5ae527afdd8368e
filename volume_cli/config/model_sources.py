"""Model entries of a project: HuggingFace, ModelScope, direct URLs, local folders."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from volume_cli.config.strict import StrictModel

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _check_repo_id(value: str) -> str:
    if not _HUB_ID.match(value) or ".." in value or value.endswith((".", "-")):
        raise ValueError(f"repository id must look like 'owner/name', got {value!r}")
    return value


def _check_relative_dest(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or value.startswith("~") or "\\" in value:
        raise ValueError(f"destination must be a relative path under models/, got {value!r}")
    if any(part in {"..", "."} for part in path.parts):
        raise ValueError(f"destination may not contain '.' or '..' parts, got {value!r}")
    managed = {"hub", "modelscope", ".manifests", "huggingface", "torch", ".volume-cli-staging"}  # + models/staging.py
    if path.parts and path.parts[0] in managed:
        raise ValueError(f"destination {value!r} is inside a folder volume-cli manages; choose another path")
    return str(path)


def _check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    lowered = value.lower().removeprefix("sha256:")
    if not _SHA256.match(lowered):
        raise ValueError(f"sha256 must be 64 hex digits, got {value!r}")
    return lowered


def git_ref_problem(value: str) -> str | None:
    """Why ``value`` is not a safe git ref name (``git check-ref-format`` rules), or None when it is."""
    if not value or len(value) > 200:
        return "must be 1 to 200 characters"
    if value.startswith(("/", "-")) or value.endswith(("/", ".")):
        return "may not start with '/' or '-' or end with '/' or '.'"
    if any(ord(char) < 33 or ord(char) == 127 for char in value) or re.search(r"[~^:?*\[\\]", value):
        return "may not contain spaces, control characters or any of ~ ^ : ? * [ \\"
    if ".." in value or "//" in value or "@{" in value or value == "@":
        return "may not contain '..', '//' or '@{'"
    for part in value.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return "no part may start with '.' or end with '.lock'"
    return None


def _check_revision(value: str) -> str:
    """A branch, tag or commit: it names a ``refs`` file and a snapshot folder, so git's ref rules apply."""
    problem = git_ref_problem(value)
    if problem is not None:
        raise ValueError(f"revision {value!r} is not a valid branch, tag or commit name: it {problem}")
    return value


def _check_url(value: str) -> str:
    if not re.match(r"^https?://\S+$", value):
        raise ValueError(f"url must start with http:// or https://, got {value!r}")
    return value


HubId = Annotated[str, AfterValidator(_check_repo_id)]
RelativeDest = Annotated[str, AfterValidator(_check_relative_dest)]
Sha256 = Annotated[str | None, AfterValidator(_check_sha256)]
HttpUrl = Annotated[str, AfterValidator(_check_url)]
Revision = Annotated[str, AfterValidator(_check_revision)]
EnvVarName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)]


class HuggingFaceModel(StrictModel):
    source: Literal["huggingface"] = "huggingface"
    repo_id: HubId
    repo_type: Literal["model", "dataset"] = "model"
    revision: Revision = "main"
    allow_patterns: list[str] | None = None
    ignore_patterns: list[str] | None = None

    @property
    def key(self) -> str:
        return f"huggingface/{self.repo_type}/{self.repo_id}"


class ModelScopeModel(StrictModel):
    source: Literal["modelscope"] = "modelscope"
    model_id: HubId
    revision: Revision = "master"
    allow_patterns: list[str] | None = None
    ignore_patterns: list[str] | None = None

    @property
    def key(self) -> str:
        return f"modelscope/{self.model_id}"


class UrlModel(StrictModel):
    source: Literal["url"] = "url"
    url: HttpUrl
    dest: RelativeDest
    sha256: Sha256 = None
    token_env: EnvVarName | None = Field(
        default=None,
        description="Environment variable holding a token sent as 'Authorization: Bearer', to the URL's host only",
    )

    @property
    def key(self) -> str:
        return f"url/{self.dest}"


class LocalModel(StrictModel):
    source: Literal["local"] = "local"
    path: str = Field(min_length=1, description="File or folder; relative paths are relative to the project folder")
    dest: RelativeDest

    @property
    def key(self) -> str:
        return f"local/{self.dest}"


ModelSpec = Annotated[
    HuggingFaceModel | ModelScopeModel | UrlModel | LocalModel,
    Field(discriminator="source"),
]
