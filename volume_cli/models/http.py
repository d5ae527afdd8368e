"""HTTP for the hubs: per-request timeouts, retries with backoff and jitter, failover signals.

We speak the hubs' documented HTTP protocols ourselves instead of driving
``snapshot_download`` so that every request has a timeout (a silent server
cannot hang a container start), every retry is ours (backoff with jitter on
connection errors, timeouts, 429 and 5xx), partial files resume with
``Range`` and are hashed as they arrive, and a failing mirror can be
dropped for the rest of the run. ``requests`` is imported lazily: the
offline no-op path never loads it.

Every wait is bounded, because a start-up ``models ensure`` must never hang
a worker: a host silent for ``timeout`` seconds fails the attempt; a body
trickling below ``min_rate`` bytes/s over a window of ``timeout`` seconds is
cut (and resumed); no new attempt starts on a host that made no progress for
``timeout`` seconds (the caller fails over); and ``deadline_at`` bounds the
whole run. ``cancel()`` stops every transfer of a client at its next chunk.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from volume_cli import __version__
from volume_cli.errors import DeadlineError

if TYPE_CHECKING:
    import requests

USER_AGENT = f"volume-cli/{__version__}"
# Below this a cold start never finishes a model anyway; far above what a hub trickling bytes sends.
DEFAULT_MIN_RATE = 10 * 1024.0
_MIN_WAIT = 0.05


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 20.0
    min_rate: float = DEFAULT_MIN_RATE  # bytes/s over a window of ``timeout`` seconds; 0 turns the rule off
    deadline_at: float | None = None  # time.monotonic() by which the whole run must end
    deadline_seconds: float | None = None  # the user's --deadline, for messages

    def delay(self, attempt: int, retry_after: float | None) -> float:
        base = min(self.max_backoff, self.backoff * float(2**attempt))
        delay: float = base * random.uniform(0.5, 1.0)  # jitter: pods retrying together spread out
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        return None if self.deadline_at is None else self.deadline_at - time.monotonic()

    def wait_for(self) -> float:
        """The longest a single network wait may last now: ``timeout``, cut short by the deadline."""
        left = self.remaining()
        return self.timeout if left is None else max(_MIN_WAIT, min(self.timeout, left))


def with_deadline(policy: RetryPolicy, seconds: float | None) -> RetryPolicy:
    """``policy`` with an overall deadline ``seconds`` from now (None or 0: none)."""
    if not seconds:
        return policy
    return replace(policy, deadline_at=time.monotonic() + seconds, deadline_seconds=seconds)


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


class Cancelled(Exception):
    """The run is being interrupted (Ctrl-C, SIGTERM): stop at once, keep the partial file."""


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


class _Budget:
    """One request on one endpoint: when it last made progress worth waiting for."""

    def __init__(self) -> None:
        self.progress_at = time.monotonic()


class HttpClient:
    """Thread-safe: one ``requests.Session`` (connection pool) per thread."""

    def __init__(self, policy: RetryPolicy, *, sleep: Callable[[float], None] = time.sleep) -> None:
        import requests  # lazy: only runs that talk to a hub pay for it

        self._requests = requests
        self.policy = policy
        self._sleep = sleep
        self._local = threading.local()
        self._cancelled = threading.Event()
        self._streams: weakref.WeakSet[requests.Response] = weakref.WeakSet()
        self._streams_lock = threading.Lock()
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

    # -- bounds -------------------------------------------------------------------------
    def describe(self, exc: BaseException, url: str = "") -> str:
        host = f" from {host_of(url)}" if url else ""
        if isinstance(exc, self._requests.Timeout) or "timed out" in str(exc).lower():
            return f"no answer{host}: timed out after {self.policy.wait_for():g}s"
        if isinstance(exc, self._requests.ConnectionError):
            return f"connection{' to ' + host_of(url) if url else ''} failed ({type(exc).__name__})"
        return f"{type(exc).__name__}: {exc}"[:200]

    def check_bounds(self, url: str) -> None:
        """Raise when the run was cancelled or its deadline passed (called between waits)."""
        if self._cancelled.is_set():
            raise Cancelled("interrupted")
        left = self.policy.remaining()
        if left is not None and left <= 0:
            raise DeadlineError(
                f"the --deadline of {self.policy.deadline_seconds or 0:g}s ran out while talking to {host_of(url)}; "
                "finished files are kept and partial ones resume on the next run",
                hint="run it again, or give it a longer --deadline",
            )

    def _timeouts(self) -> tuple[float, float]:
        wait = self.policy.wait_for()
        return (wait, wait)

    def cancel(self) -> None:
        """Stop every transfer of this client promptly: flag it and wake reads blocked on a socket."""
        self._cancelled.set()
        with self._streams_lock:
            streams = list(self._streams)
        for response in streams:
            sock = getattr(getattr(response.raw, "connection", None), "sock", None)
            if isinstance(sock, socket.socket):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def guarded_reader(self, read: Callable[[], bytes], url: str) -> Callable[[], bytes]:
        """``read`` with the throughput rule, the deadline and cancellation applied after each chunk."""
        window = self.policy.timeout
        minimum = self.policy.min_rate * window
        budget: _Budget | None = getattr(self._local, "budget", None)
        state = {"start": time.monotonic(), "bytes": 0}

        def guarded() -> bytes:
            try:
                chunk = read()
            except Exception:
                self.check_bounds(url)  # a read cut by cancel() is the cancellation, not a network error
                raise
            self.check_bounds(url)
            now = time.monotonic()
            state["bytes"] += len(chunk)
            if state["bytes"] >= minimum and budget is not None:
                budget.progress_at = now  # this window's quota is met: a cut now is worth retrying
            if chunk and now - state["start"] >= window:
                if state["bytes"] < minimum:
                    rate = state["bytes"] / (now - state["start"])
                    raise TransientFailure(
                        f"{host_of(url)} is too slow: {rate:.0f} B/s over {now - state['start']:.0f}s "
                        f"(minimum {self.policy.min_rate:g} B/s)"
                    )
                state["start"], state["bytes"] = now, 0
            return chunk

        return guarded

    # -- requests -----------------------------------------------------------------------
    def get(
        self, url: str, headers: Mapping[str, str], *, stream: bool, params: Mapping[str, str] | None = None
    ) -> requests.Response:
        self.check_bounds(url)
        try:
            response = self._session().get(
                url,
                headers=dict(headers),
                params=params,
                stream=stream,
                timeout=self._timeouts(),
                allow_redirects=True,
            )
        except self.network_errors as exc:
            raise TransientFailure(self.describe(exc, url)) from None
        if stream:
            with self._streams_lock:
                self._streams.add(response)
            if self._cancelled.is_set():
                self.cancel()  # cancelled while this one was connecting
        return response

    def retrying(self, what: str, attempt: Callable[[], Any]) -> Any:
        """Run ``attempt`` until it succeeds; give up on this endpoint after ``retries`` more tries or
        once it made no progress for ``timeout`` seconds (a silent host costs one timeout, not five)."""
        last = "no attempt"
        budget = _Budget()
        self._local.budget = budget
        tries = 0
        try:
            for number in range(self.policy.retries + 1):
                self.check_bounds(what)
                tries += 1
                try:
                    return attempt()
                except TransientFailure as exc:
                    last = exc.reason
                    if number >= self.policy.retries:
                        break
                    delay = self.policy.delay(number, exc.retry_after)
                    if time.monotonic() + delay - budget.progress_at >= self.policy.timeout:
                        break
                    left = self.policy.remaining()
                    self._sleep(delay if left is None else max(0.0, min(delay, left)))
        finally:
            self._local.budget = None
        raise EndpointFailure(f"{what}: {last} (after {tries} attempt{'s' if tries != 1 else ''})")

    def _read_json(self, response: requests.Response, url: str) -> Any:
        raw = response.raw
        read1 = getattr(raw, "read1", None)
        read: Callable[[], bytes] = (
            (lambda: bytes(read1(65536, decode_content=True)))
            if read1 is not None
            else (lambda: bytes(raw.read(65536, decode_content=True)))
        )
        guarded = self.guarded_reader(read, url)
        body = bytearray()
        try:
            while chunk := guarded():
                body += chunk
        except self.network_errors as exc:
            raise TransientFailure(self.describe(exc, url)) from None
        try:
            return json.loads(bytes(body))
        except ValueError:
            # A mirror answering HTML (a captcha, an error page): another endpoint may do better.
            raise EndpointFailure(f"{url}: answered something that is not JSON") from None

    def get_json(
        self, url: str, *, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> tuple[Any, Mapping[str, str]]:
        """GET a JSON document; returns (data, response headers). The body is streamed so a
        trickling listing is bounded like a file."""

        def attempt() -> tuple[Any, Mapping[str, str]]:
            response = self.get(url, headers, stream=True, params=params)
            try:
                check_status(response, url)
                return self._read_json(response, url), response.headers
            finally:
                response.close()

        result: tuple[Any, Mapping[str, str]] = self.retrying(url, attempt)
        return result

    def head_size(self, url: str, *, headers: Mapping[str, str]) -> int | None:
        """Content-Length of a URL (for the free-space check); None when the server will not say."""

        def attempt() -> int | None:
            self.check_bounds(url)
            try:
                response = self._session().head(
                    url,
                    headers={**headers, "Accept-Encoding": "identity"},
                    timeout=self._timeouts(),
                    allow_redirects=True,
                )
            except self.network_errors as exc:
                raise TransientFailure(self.describe(exc, url)) from None
            if response.status_code in (405, 501):
                return None
            check_status(response, url)
            length = response.headers.get("Content-Length")
            return int(length) if length and length.isdigit() else None

        size: int | None = self.retrying(url, attempt)
        return size
