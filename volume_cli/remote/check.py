"""``remote check``: is the remote there, may we use it, and what does it really do with objects.

Later steps (push, apply) rely on these answers instead of on what S3 promises: RunPod documents
neither metadata, conditional writes nor consistency, and rclone's S3 server ignores some of them.
The probe writes under its own prefix and deletes one object at a time (RunPod lacks DeleteObjects).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from volume_cli.errors import RemoteUnavailableError
from volume_cli.remote.config import Remote
from volume_cli.remote.s3 import credential_source, endpoint_host, make_client

PROBE_PREFIX = ".volume-cli-probe/"
_PROBE_BODY = b"volume-cli remote check probe\n"
_PROBE_META = {"mode": "644", "mtime": "1700000000"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "401", "Forbidden"}


@dataclass(frozen=True)
class Capability:
    name: str
    ok: bool | None  # None: could not be told (an earlier step failed)
    detail: str


@dataclass(frozen=True)
class CheckReport:
    remote: str
    endpoint: str
    bucket: str
    credentials: str
    capabilities: tuple[Capability, ...]

    def capability(self, name: str) -> Capability:
        return next(item for item in self.capabilities if item.name == name)


def check_remote(remote: Remote, *, environ: Mapping[str, str], timeout: float) -> CheckReport:
    """Each capability as seen on this remote; raises RemoteUnavailableError when it cannot be used at all."""
    client = make_client(remote, environ=environ, timeout=timeout)
    from botocore.exceptions import BotoCoreError, ClientError  # boto3 is there: make_client imported it

    source = credential_source(remote, environ)
    prefix = f"{PROBE_PREFIX}{secrets.token_hex(6)}/"
    _access(client, remote, prefix)
    capabilities = [Capability("reachable", True, endpoint_host(remote)), Capability("authorised", True, "list bucket")]
    written: list[str] = []
    try:
        capabilities.extend(_probe_objects(client, remote.bucket, prefix, written))
    except (BotoCoreError, ClientError) as exc:
        raise RemoteUnavailableError(
            f"{endpoint_host(remote)} refused the probe object under {prefix} in bucket {remote.bucket!r}: {_error_code(exc)}",
            hint=f"the key of remote {remote.name!r} needs read and write access to the bucket",
        ) from exc
    finally:
        capabilities.append(_delete(client, remote.bucket, written))
    return CheckReport(
        remote=remote.name,
        endpoint=remote.endpoint,
        bucket=remote.bucket,
        credentials=f"{source.kind}: {source.detail}",
        capabilities=tuple(capabilities),
    )


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code") or status or type(exc).__name__)


def _access(client: Any, remote: Remote, prefix: str) -> None:
    """One small listing: fails fast, naming the host, when the remote is unreachable or refuses us."""
    from botocore.exceptions import BotoCoreError, ClientError

    host = endpoint_host(remote)
    try:
        client.list_objects_v2(Bucket=remote.bucket, Prefix=prefix, MaxKeys=1)
    except ClientError as exc:
        code = _error_code(exc)
        if code == "NoSuchBucket":
            raise RemoteUnavailableError(
                f"{host} has no bucket {remote.bucket!r}",
                hint="check the bucket (for RunPod: the network volume id) and the datacenter of the endpoint",
            ) from exc
        what = "refused the credentials" if code in _DENIED else f"answered {code}"
        raise RemoteUnavailableError(
            f"{host} {what} for bucket {remote.bucket!r}",
            hint=f"check the access key and secret of remote {remote.name!r} (for RunPod: an S3 API key, not the API key)",
        ) from exc
    except BotoCoreError as exc:
        raise RemoteUnavailableError(
            f"cannot reach {host}: {type(exc).__name__}",
            hint=f"check the endpoint {remote.endpoint}, the network, or raise --timeout",
        ) from exc


def _probe_objects(client: Any, bucket: str, prefix: str, written: list[str]) -> list[Capability]:
    key = f"{prefix}probe.bin"
    put = client.put_object(Bucket=bucket, Key=key, Body=_PROBE_BODY, Metadata=_PROBE_META)
    written.append(key)
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    results = [Capability("put/get", body == _PROBE_BODY, "read back the same bytes" if body == _PROBE_BODY else "")]
    etag = str(put.get("ETag", "")).strip('"')
    md5 = hashlib.md5(_PROBE_BODY).hexdigest()
    results.append(Capability("etag = md5", etag == md5, "single-part put" if etag == md5 else f"etag {etag!r}"))
    results.append(_metadata(client.head_object(Bucket=bucket, Key=key).get("Metadata", {})))
    results.append(_conditional_write(client, bucket, key, written))
    results.append(_delimiter_listing(client, bucket, prefix, written))
    return results


def _metadata(meta: dict[str, str]) -> Capability:
    # header names are case-insensitive: some servers (rclone) give them back capitalised
    lowered = {str(k).lower(): v for k, v in meta.items()}
    kept = {k: lowered.get(k) for k in _PROBE_META}
    if kept != _PROBE_META:
        return Capability("user metadata", False, f"HEAD gave {sorted(lowered)} (wanted mode, mtime)")
    note = "" if all(k in meta for k in _PROBE_META) else " (names' case changed)"
    return Capability("user metadata", True, f"mode, mtime kept on HEAD{note}")


def _conditional_write(client: Any, bucket: str, key: str, written: list[str]) -> Capability:
    """A second put of an existing key with If-None-Match: * must fail with 412 where it is honoured."""
    from botocore.exceptions import ClientError

    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"overwritten", IfNoneMatch="*")
    except ClientError as exc:
        code = _error_code(exc)
        if code in {"PreconditionFailed", "412"}:
            return Capability("conditional write", True, "If-None-Match: * refused an overwrite")
        return Capability("conditional write", False, f"If-None-Match answered {code}")
    return Capability("conditional write", False, "If-None-Match: * ignored (object overwritten)")


def _delimiter_listing(client: Any, bucket: str, prefix: str, written: list[str]) -> Capability:
    nested = f"{prefix}sub/child.bin"
    client.put_object(Bucket=bucket, Key=nested, Body=b"x")
    written.append(nested)
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/")
    folders = [item.get("Prefix") for item in listing.get("CommonPrefixes", [])]
    files = [item.get("Key") for item in listing.get("Contents", [])]
    ok = folders == [f"{prefix}sub/"] and files == [f"{prefix}probe.bin"]
    return Capability("list with delimiter", ok, "one folder at a time" if ok else f"folders {folders}, files {files}")


def _delete(client: Any, bucket: str, written: list[str]) -> Capability:
    """Each probe object removed on its own (DeleteObject), then checked gone."""
    from botocore.exceptions import BotoCoreError, ClientError

    left: list[str] = []
    for key in reversed(written):
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except (BotoCoreError, ClientError):
            left.append(key)
            continue
        if _exists(client, bucket, key):
            left.append(key)
    if not written:
        return Capability("delete", None, "nothing was written")
    return Capability("delete", not left, "probe removed" if not left else f"left behind: {', '.join(left)}")


def _exists(client: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    head: Callable[..., Any] = client.head_object
    try:
        head(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True
