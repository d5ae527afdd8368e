"""The S3 client of a remote: credentials from the environment or a profile, bounded waits, lenient checksums.

boto3 is the optional extra ``volume-cli[s3]``: a volume that is only set up from a pod never needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from volume_cli.errors import MissingExtraError, RemoteUnavailableError
from volume_cli.remote.config import Remote, secret_env_names

INSTALL_HINT = "pip install 'volume-cli[s3]'  (or: uv pip install boto3)"


@dataclass(frozen=True)
class CredentialSource:
    """Where a remote's key comes from (a variable name or a profile), never the key itself."""

    kind: str  # "env", "profile" or "missing"
    detail: str


def credential_source(remote: Remote, environ: Mapping[str, str]) -> CredentialSource:
    access, secret = secret_env_names(remote.name)
    if environ.get(access) and environ.get(secret):
        return CredentialSource("env", f"{access}, {secret}")
    if remote.profile:
        return CredentialSource("profile", remote.profile)
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        return CredentialSource("env", "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY")
    return CredentialSource("missing", f"set {access} and {secret} (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")


def endpoint_host(remote: Remote) -> str:
    return urlsplit(remote.endpoint).netloc


def make_client(remote: Remote, *, environ: Mapping[str, str], timeout: float) -> Any:
    """A boto3 S3 client for ``remote``; fails before any request when boto3 or the key is missing."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise MissingExtraError("S3 remotes need boto3, which is not installed", hint=INSTALL_HINT) from exc
    source = credential_source(remote, environ)
    if source.kind == "missing":
        raise RemoteUnavailableError(f"no credentials for remote {remote.name!r}", hint=f"{source.detail}")
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 3, "mode": "standard"},
        # boto3 >= 1.36 sends CRC checksums that many S3-compatible servers (RunPod among them) reject
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"},  # a bucket named by a volume id is no DNS label
    )
    if source.kind == "profile":
        session = boto3.session.Session(profile_name=remote.profile, region_name=remote.region)
        return session.client("s3", endpoint_url=remote.endpoint, config=config)
    access, secret = secret_env_names(remote.name)
    if not (environ.get(access) and environ.get(secret)):
        access, secret = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
    session = boto3.session.Session(
        aws_access_key_id=environ[access],
        aws_secret_access_key=environ[secret],
        aws_session_token=environ.get("AWS_SESSION_TOKEN") if access == "AWS_ACCESS_KEY_ID" else None,
        region_name=remote.region or "us-east-1",
    )
    return session.client("s3", endpoint_url=remote.endpoint, config=config)
