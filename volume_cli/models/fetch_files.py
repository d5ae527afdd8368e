"""Fetching the files of one model: several at once, failover per file, atomic placement.

Each file goes through ``fetch_file.fetch_to_partial``; this module puts the verified partial in place."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from volume_cli.errors import ChecksumError, DownloadError
from volume_cli.fileops import swap_into_place
from volume_cli.models.endpoints import EndpointPool
from volume_cli.models.fetch_file import ChecksumMismatch, Fetched, fetch_to_partial
from volume_cli.models.http import HttpClient, HttpStatusError
from volume_cli.models.sources import FileJob
from volume_cli.models.tokens import auth_headers
from volume_cli.progress import Task
from volume_cli.redact import redact_text

_STATUS_HINTS = {
    404: "check the repository id, revision and file names",
}
_TOKEN_VARIABLES = {
    "huggingface": "HF_TOKEN (or hf auth login)",
    "modelscope": "MODELSCOPE_API_TOKEN (or modelscope login)",
}


def status_error(key: str, exc: HttpStatusError, *, source: str = "", token_sent: bool = False) -> DownloadError:
    return DownloadError(redact_text(f"{key}: {exc}"), hint=_status_hint(exc.status, source, token_sent))


def _status_hint(status: int, source: str, token_sent: bool) -> str | None:
    if status not in (401, 403):
        return _STATUS_HINTS.get(status)
    # A refused token and a missing one need different fixes: setting HF_TOKEN again changes nothing.
    if source == "url":
        return "the server refused access to this URL (volume-cli sends no credentials to plain URLs)"
    if token_sent:
        return "the token was refused (wrong, or no access to this repo): check it and accept the repo's terms"
    variable = _TOKEN_VARIABLES.get(source, "HF_TOKEN / MODELSCOPE_API_TOKEN")
    return f"the repository is private or gated and no token was found: set {variable} and accept its terms"


class ByteCounter:
    """Bytes of one model, reported to its task and the overall task (from several threads)."""

    def __init__(self, model_task: Task, overall: Task) -> None:
        self._lock = threading.Lock()
        self._model_task = model_task
        self._overall = overall
        self.total = 0

    def add(self, amount: int) -> None:
        if not amount:
            return
        with self._lock:
            self.total += amount
            self._model_task.advance(amount)
            self._overall.advance(amount)


@dataclass
class FetchReport:
    sha256: dict[str, str] = field(default_factory=dict)  # file path -> computed sha256 (URL sources)
    fetched: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)


def fetch_files(
    *,
    key: str,
    source: str,
    jobs: list[FileJob],
    pool: EndpointPool,
    http: HttpClient,
    token: str | None,
    counter: ByteCounter,
    max_workers: int,
) -> FetchReport:
    report = FetchReport()
    lock = threading.Lock()
    by_final: dict[Path, list[FileJob]] = {}
    for job in jobs:
        if not job.present:
            by_final.setdefault(job.final, []).append(job)  # identical files share one HF blob

    def one(job: FileJob) -> None:
        def attempt(endpoint: str) -> Fetched:
            url = job.url_for(endpoint)
            return fetch_to_partial(
                http,
                url,
                headers={**auth_headers(source, endpoint, url, token), **job.headers},
                partial=job.partial,
                size=job.file.size,
                checksum=job.file.checksum,
                on_bytes=counter.add,
            )

        try:
            fetched, endpoint = pool.call(attempt)
        except HttpStatusError as exc:
            raise status_error(key, exc, source=source, token_sent=token is not None) from None
        except ChecksumMismatch as exc:
            raise ChecksumError(
                f"{key}: {job.file.path}: checksum mismatch ({exc}); nothing was put in place"
            ) from None
        swap_into_place(job.partial, job.final)
        with lock:
            for same in by_final[job.final]:
                report.fetched.append(same.file.path)
                if fetched.sha256:
                    report.sha256[same.file.path] = fetched.sha256
            if endpoint not in report.endpoints:
                report.endpoints.append(endpoint)

    firsts = [group[0] for group in by_final.values()]
    if not firsts:
        return report
    _run_parallel(one, firsts, max_workers, on_abort=http.cancel)
    report.fetched.sort()
    return report


def _run_parallel(
    work: Callable[[FileJob], None], jobs: list[FileJob], max_workers: int, *, on_abort: Callable[[], None]
) -> None:
    """Run jobs on a pool; on the first failure stop starting new ones and raise it."""
    executor = ThreadPoolExecutor(
        max_workers=max(1, min(max_workers, len(jobs))), thread_name_prefix="volume-cli-fetch"
    )
    futures: list[Future[None]] = [executor.submit(work, job) for job in jobs]
    try:
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
    except BaseException:
        # Ctrl-C / SIGTERM: stop the transfers (partial files stay for the resume) and give them
        # a moment to stop; never wait for a whole transfer to end.
        on_abort()
        executor.shutdown(wait=False, cancel_futures=True)
        wait(futures, timeout=1.0)
        raise
    with executor:
        failed = [future for future in done if future.exception() is not None]
        if failed:
            for future in pending:
                future.cancel()
            wait(pending)
            error = failed[0].exception()
            assert error is not None
            raise error
