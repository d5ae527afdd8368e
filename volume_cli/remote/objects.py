"""Object operations on a remote's bucket, shaped by RunPod's S3 API rather than by what S3 promises.

- 502/524 answers and timeouts are retried a bounded number of times with backoff; 507 means the volume is full.
- Listings go one folder at a time with a delimiter and stop on a repeated continuation token.
- A CompleteMultipartUpload whose answer is lost is checked with HEAD before it is retried.
- Every request is counted, so a push can report (and tests can bound) what it cost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from volume_cli.errors import RemoteUnavailableError, VolumeFullError
from volume_cli.remote.config import Remote
from volume_cli.remote.s3 import endpoint_host

T = TypeVar("T")
RETRY_STATUSES = frozenset({500, 502, 503, 504, 524})
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(frozen=True)
class RemoteObject:
    size: int
    metadata: dict[str, str]  # names lowered: rclone gives them back capitalised
    etag: str


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status else None


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code") or _status(exc) or type(exc).__name__)


class RemoteBucket:
    """One remote's bucket through a boto3 client; thread-safe (boto3 clients are)."""

    def __init__(self, remote: Remote, client: Any, *, attempts: int = 5, backoff: float = 0.2) -> None:
        self.remote = remote
        self.client = client
        self.attempts = attempts
        self.backoff = backoff
        self.requests = 0
        self._count_lock = threading.Lock()

    def _call(self, operation: Callable[[], T], what: str) -> T:
        """``operation`` with bounded retries on transient answers; 507 and the last failure raise."""
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(1, self.attempts + 1):
            with self._count_lock:
                self.requests += 1
            try:
                return operation()
            except ClientError as exc:
                if _status(exc) == 507:
                    raise VolumeFullError(
                        f"{endpoint_host(self.remote)}: volume {self.remote.bucket!r} is full (507) during {what}",
                        hint="free space on that volume (volume-cli gc there) or grow it, then push again",
                    ) from None
                if _status(exc) in RETRY_STATUSES and attempt < self.attempts:
                    time.sleep(min(self.backoff * 2 ** (attempt - 1), 5.0))
                    continue
                if _code(exc) in _MISSING or _code(exc) == "NoSuchUpload":
                    raise  # the caller's answer: absent
                raise RemoteUnavailableError(
                    f"{endpoint_host(self.remote)} answered {_code(exc)} to {what} in bucket {self.remote.bucket!r}",
                    hint=f"volume-cli remote check {self.remote.name}",
                ) from None
            except BotoCoreError as exc:
                if attempt == self.attempts:
                    raise RemoteUnavailableError(
                        f"{endpoint_host(self.remote)} did not answer {what}: {type(exc).__name__}",
                        hint="check the network and run the same command again: it resumes",
                    ) from None
            time.sleep(min(self.backoff * 2 ** (attempt - 1), 5.0))
        raise AssertionError("unreachable")

    def head(self, key: str) -> RemoteObject | None:
        from botocore.exceptions import ClientError

        try:
            answer = self._call(lambda: self.client.head_object(Bucket=self.remote.bucket, Key=key), f"HEAD {key}")
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        meta = {str(name).lower(): str(value) for name, value in (answer.get("Metadata") or {}).items()}
        return RemoteObject(int(answer.get("ContentLength", 0)), meta, str(answer.get("ETag", "")).strip('"'))

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        def fetch() -> bytes:
            return bytes(self.client.get_object(Bucket=self.remote.bucket, Key=key)["Body"].read())

        try:
            return self._call(fetch, f"GET {key}")
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise

    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        self._call(
            lambda: self.client.put_object(Bucket=self.remote.bucket, Key=key, Body=body, Metadata=metadata),
            f"PUT {key}",
        )

    def delete(self, key: str) -> None:
        # One object at a time: RunPod has no DeleteObjects.
        self._call(lambda: self.client.delete_object(Bucket=self.remote.bucket, Key=key), f"DELETE {key}")

    def list_folder(self, prefix: str) -> tuple[list[str], list[str]]:
        """Keys and sub-folders directly under ``prefix`` (one folder, with a delimiter: never the whole bucket)."""
        keys: dict[str, None] = {}
        folders: dict[str, None] = {}
        for page in self._pages(prefix):
            keys.update(dict.fromkeys(item["Key"] for item in page.get("Contents", [])))
            folders.update(dict.fromkeys(item["Prefix"] for item in page.get("CommonPrefixes", [])))
        return list(keys), list(folders)

    def _pages(self, prefix: str) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        token: str | None = None
        while True:
            arguments: dict[str, Any] = {"Bucket": self.remote.bucket, "Prefix": prefix, "Delimiter": "/"}
            if token:
                arguments["ContinuationToken"] = token
            page: dict[str, Any] = self._call(partial(self.client.list_objects_v2, **arguments), f"LIST {prefix}")
            yield page
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            # RunPod can hand the same token back forever: a repeat means we have seen every page.
            if not token or token in seen:
                return
            seen.add(token)

    # -- multipart ---------------------------------------------------------------------
    def start_multipart(self, key: str, metadata: dict[str, str]) -> str:
        answer = self._call(
            lambda: self.client.create_multipart_upload(Bucket=self.remote.bucket, Key=key, Metadata=metadata),
            f"start multipart {key}",
        )
        return str(answer["UploadId"])

    def uploaded_parts(self, key: str, upload_id: str) -> dict[int, tuple[str, int]] | None:
        """Parts already stored for ``upload_id`` (number -> etag, size); None when the upload is gone."""
        from botocore.exceptions import ClientError

        parts: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            try:
                page: dict[str, Any] = self._call(
                    partial(
                        self.client.list_parts,
                        Bucket=self.remote.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumberMarker=marker,
                    ),
                    f"list parts {key}",
                )
            except ClientError as exc:
                if _code(exc) in {"NoSuchUpload", "404"}:
                    return None
                raise
            for part in page.get("Parts", []):
                parts[int(part["PartNumber"])] = (str(part["ETag"]), int(part["Size"]))
            next_marker = int(page.get("NextPartNumberMarker") or 0)
            if not page.get("IsTruncated") or next_marker <= marker:
                return parts
            marker = next_marker

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        answer = self._call(
            lambda: self.client.upload_part(
                Bucket=self.remote.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            ),
            f"part {number} of {key}",
        )
        return str(answer["ETag"])

    def complete_multipart(self, key: str, upload_id: str, etags: dict[int, str], *, size: int, sha256: str) -> None:
        """Complete the upload; a lost answer (timeout, 524) is checked with HEAD before trying again."""
        from botocore.exceptions import BotoCoreError, ClientError

        parts = {"Parts": [{"PartNumber": number, "ETag": etags[number]} for number in sorted(etags)]}
        for attempt in range(1, self.attempts + 1):
            with self._count_lock:
                self.requests += 1
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.remote.bucket, Key=key, UploadId=upload_id, MultipartUpload=parts
                )
                return
            except (ClientError, BotoCoreError) as exc:
                landed = self.head(key)
                if landed is not None and landed.size == size and landed.metadata.get("sha256", sha256) == sha256:
                    return  # the server finished; only its answer was lost
                if (isinstance(exc, ClientError) and _status(exc) not in RETRY_STATUSES) or attempt == self.attempts:
                    raise RemoteUnavailableError(
                        f"{endpoint_host(self.remote)} did not complete the upload of {key}: {_code(exc)}",
                        hint="run the same push again: it resumes from the parts already there",
                    ) from None
            time.sleep(min(self.backoff * 2 ** (attempt - 1), 5.0))
