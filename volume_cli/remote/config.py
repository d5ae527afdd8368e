"""The remotes document: named S3 endpoints, kept in the user's config dir, never on the volume.

Secrets are never stored here: they come from the environment or an AWS profile at run time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from volume_cli.errors import RemoteConfigError
from volume_cli.fileops import atomic_write_text

SCHEMA_VERSION = 1
# a name becomes part of env var names (VOLUME_CLI_REMOTE_<NAME>_...), so keep it plain ASCII
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{0,63}$")
# bucket and RunPod ids end up in URLs: anything that could change the host or path is refused
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_RUNPOD_VOLUME = re.compile(r"^[A-Za-z0-9]{1,64}$")
_RUNPOD_DATACENTER = re.compile(r"^[A-Za-z0-9]{1,16}(-[A-Za-z0-9]{1,16}){1,4}$")


class Remote(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    endpoint: str
    bucket: str = Field(min_length=1)
    region: str | None = None
    profile: str | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("a remote name is 1-64 letters, digits or _ and starts with a letter or digit")
        return value

    @field_validator("bucket")
    @classmethod
    def _plain_bucket(cls, value: str) -> str:
        if not _BUCKET.fullmatch(value) or ".." in value:
            raise ValueError("a bucket is letters, digits, '.', '_' or '-' (no '/', no '..')")
        return value

    @field_validator("endpoint")
    @classmethod
    def _http_endpoint(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("the endpoint must start with http:// or https://")
        if any(char.isspace() or not char.isprintable() for char in value):
            raise ValueError("the endpoint contains spaces or control characters")
        parts = urlsplit(value)
        # this file is not a secret store: a user:password@ or a query would be written to disk
        if not parts.hostname or "@" in parts.netloc or parts.query or parts.fragment:
            raise ValueError("the endpoint is scheme://host[:port][/path]; credentials come from the environment")
        return value


class RemotesDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION
    remotes: dict[str, Remote] = Field(default_factory=dict)


def remotes_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "volume-cli" / "remotes.json"


def runpod_remote(name: str, *, volume_id: str, datacenter: str) -> Remote:
    """RunPod's S3 API: one endpoint per datacenter, the network volume id as the bucket."""
    if not _RUNPOD_VOLUME.fullmatch(volume_id):
        raise ValueError(f"{volume_id!r} is not a RunPod network volume id (letters and digits)")
    if not _RUNPOD_DATACENTER.fullmatch(datacenter):
        raise ValueError(f"{datacenter!r} is not a RunPod datacenter id (like EUR-IS-1)")
    return Remote(
        name=name,
        endpoint=f"https://s3api-{datacenter.lower()}.runpod.io/",
        bucket=volume_id,
        region=datacenter.upper(),
    )


def load_remotes(path: Path) -> RemotesDocument:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return RemotesDocument()
    except (OSError, ValueError) as exc:
        raise RemoteConfigError(f"cannot read {path}: {exc}") from exc
    if isinstance(raw, dict) and raw.get("schema_version") != SCHEMA_VERSION:
        raise RemoteConfigError(
            f"{path} has schema version {raw.get('schema_version')!r}; this volume-cli reads {SCHEMA_VERSION}",
            hint="upgrade volume-cli, or move the file aside and add the remotes again",
        )
    try:
        return RemotesDocument.model_validate(raw)
    except ValidationError as exc:
        raise RemoteConfigError(f"{path} is not a valid remotes file: {exc.errors()[0]['msg']}") from exc


def _save(path: Path, document: RemotesDocument) -> None:
    atomic_write_text(path, document.model_dump_json(indent=2) + "\n")


def add_remote(path: Path, remote: Remote) -> RemotesDocument:
    document = load_remotes(path)
    if remote.name in document.remotes:
        raise RemoteConfigError(
            f"a remote named {remote.name!r} already exists", hint=f"volume-cli remote rm {remote.name}"
        )
    updated = RemotesDocument(remotes={**document.remotes, remote.name: remote})
    _save(path, updated)
    return updated


def remove_remote(path: Path, name: str) -> RemotesDocument:
    document = load_remotes(path)
    if name not in document.remotes:
        raise RemoteConfigError(f"no remote named {name!r}", hint="volume-cli remote list")
    updated = RemotesDocument(remotes={k: v for k, v in document.remotes.items() if k != name})
    _save(path, updated)
    return updated


def secret_env_names(name: str) -> tuple[str, str]:
    """Per-remote credential variables, read at run time only; the generic AWS_* ones are the fallback."""
    key = name.upper()
    return f"VOLUME_CLI_REMOTE_{key}_ACCESS_KEY", f"VOLUME_CLI_REMOTE_{key}_SECRET_KEY"
