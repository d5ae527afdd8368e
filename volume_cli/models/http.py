"""HTTP for the hubs: per-request timeouts, retries with backoff and jitter, failover signals.

We speak the hubs' documented HTTP protocols ourselves instead of driving
``snapshot_download`` so that every request has a timeout (a silent server
cannot hang a container start), every retry is ours (backoff with jitter on
connection errors, timeouts, 429 and 5xx), partial files resume with
``Range`` and are hashed as they arrive, and a failing mirror can be
dropped for the rest of the run. ``requests`` is imported lazily: the
offline no-op path never loads it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from volume_cli import __version__

if TYPE_CHECKING:
    import requests

USER_AGENT = f"volume-cli/{__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 20.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        base = min(self.max_backoff, self.backoff * float(2**attempt))
        delay: float = base * random.uniform(0.5, 1.0)  # jitter: pods retrying together spread out
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay


class TransientFailure(Exception):
    """One attempt failed in a way worth retrying (connection, timeout, 429, 5xx, short body)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class EndpointFailure(Exception):
    """Retries exhausted against one endpoint: the caller fails over to the next."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HttpStatusError(Exception):
    """A definitive answer (404, 401, 403...): retrying or another mirror will not help."""

    def __init__(self, status: int, url: str, message: str = "") -> None:
        super().__init__(f"HTTP {status} for {url}{': ' + message if message else ''}")
        self.status = status
        self.url = url


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def check_status(response: requests.Response, url: str) -> None:
    status = response.status_code
    if status < 400:
        return
    if status >= 500 or status in (408, 429):
        raise TransientFailure(f"HTTP {status}", retry_after=_retry_after(response))
    message = response.headers.get("X-Error-Message", "")
    raise HttpStatusError(status, url, message)


class HttpClient:
    """Thread-safe: one ``requests.Session`` (connection pool) per thread."""

    def __init__(self, policy: RetryPolicy, *, sleep: Callable[[float], None] = time.sleep) -> None:
        import requests  # lazy: only runs that talk to a hub pay for it

        self._requests = requests
        self.policy = policy
        self._sleep = sleep
        self._local = threading.local()
        self.network_errors: tuple[type[BaseException], ...] = (requests.RequestException, OSError)
        try:
            import urllib3

            self.network_errors += (urllib3.exceptions.HTTPError,)
        except ImportError:  # pragma: no cover - urllib3 ships with requests
            pass

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            self._local.session = session
        return session

    def describe(self, exc: BaseException) -> str:
        if isinstance(exc, self._requests.Timeout) or "timed out" in str(exc).lower():
            return f"timed out after {self.policy.timeout:g}s"
        if isinstance(exc, self._requests.ConnectionError):
            return f"connection failed ({type(exc).__name__})"
        return f"{type(exc).__name__}: {exc}"[:200]

    def get(
        self, url: str, headers: Mapping[str, str], *, stream: bool, params: Mapping[str, str] | None = None
    ) -> requests.Response:
        try:
            return self._session().get(
                url,
                headers=dict(headers),
                params=params,
                stream=stream,
                timeout=(self.policy.timeout, self.policy.timeout),
                allow_redirects=True,
            )
        except self.network_errors as exc:
            raise TransientFailure(self.describe(exc)) from None

    def retrying(self, what: str, attempt: Callable[[], Any]) -> Any:
        last = "no attempt"
        for number in range(self.policy.retries + 1):
            try:
                return attempt()
            except TransientFailure as exc:
                last = exc.reason
                if number < self.policy.retries:
                    self._sleep(self.policy.delay(number, exc.retry_after))
        raise EndpointFailure(f"{what}: {last} (after {self.policy.retries + 1} attempts)")

    def get_json(
        self, url: str, *, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> tuple[Any, Mapping[str, str]]:
        """GET a JSON document; returns (data, response headers)."""

        def attempt() -> tuple[Any, Mapping[str, str]]:
            response = self.get(url, headers, stream=False, params=params)
            try:
                check_status(response, url)
                try:
                    return response.json(), response.headers
                except ValueError:
                    # A mirror answering HTML (a captcha, an error page): another endpoint may do better.
                    raise EndpointFailure(f"{url}: answered something that is not JSON") from None
            finally:
                response.close()

        result: tuple[Any, Mapping[str, str]] = self.retrying(url, attempt)
        return result

    def head_size(self, url: str, *, headers: Mapping[str, str]) -> int | None:
        """Content-Length of a URL (for the free-space check); None when the server will not say."""

        def attempt() -> int | None:
            try:
                response = self._session().head(
                    url,
                    headers={**headers, "Accept-Encoding": "identity"},
                    timeout=(self.policy.timeout,) * 2,
                    allow_redirects=True,
                )
            except self.network_errors as exc:
                raise TransientFailure(self.describe(exc)) from None
            if response.status_code in (405, 501):
                return None
            check_status(response, url)
            length = response.headers.get("Content-Length")
            return int(length) if length and length.isdigit() else None

        size: int | None = self.retrying(url, attempt)
        return size
