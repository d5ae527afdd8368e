"""A loopback proxy in front of a test S3 server that misbehaves the way RunPod's S3 API is known to.

- ``fail(method, match, status, times)``: answer ``status`` (502, 524, 507...) instead of forwarding, ``times`` times,
  for requests whose method is ``method`` and whose path+query contains ``match``;
- ``drop_complete``: forward CompleteMultipartUpload, then answer 524 as if the answer timed out;
- ``repeat_token``: every ListObjectsV2 page says it is truncated and hands back the same continuation token,
  which a client that trusts it follows forever.

Requests are forwarded byte for byte (the Host header too, so SigV4 signatures stay valid) and logged in
``requests`` as (method, path?query, status).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}
_TOKEN = "repeated-token"


@dataclass
class _Failure:
    method: str
    match: str
    status: int
    times: int


@dataclass
class QuirksProxy:
    upstream: str
    url: str = ""
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    drop_complete: bool = False
    repeat_token: bool = False
    failures: list[_Failure] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, method: str, match: str, status: int, *, times: int = 1) -> None:
        with self.lock:
            self.failures.append(_Failure(method, match, status, times))

    def injected(self, method: str, target: str) -> int | None:
        with self.lock:
            for failure in self.failures:
                if failure.times > 0 and failure.method == method and failure.match in target:
                    failure.times -= 1
                    return failure.status
        return None

    def count(self, method: str, match: str = "") -> int:
        return sum(1 for m, target, _ in self.requests if m == method and match in target)


def _handler(proxy: QuirksProxy) -> type[BaseHTTPRequestHandler]:
    upstream = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            injected = proxy.injected(self.command, self.path)
            if injected is not None:
                self._answer(injected, {}, b"<Error><Code>Injected</Code></Error>")
                return
            if proxy.repeat_token and self.command == "GET" and f"continuation-token={_TOKEN}" in self.path:
                self._answer(200, {"Content-Type": "application/xml"}, self.server.last_listing)  # type: ignore[attr-defined]
                return
            status, headers, answer = self._forward(body)
            if proxy.drop_complete and self.command == "POST" and "uploadId=" in self.path and status == 200:
                status, answer = 524, b"<Error><Code>524</Code></Error>"  # done upstream, the answer lost
            if proxy.repeat_token and self.command == "GET" and "list-type=2" in self.path and status == 200:
                answer = answer.replace(
                    b"<IsTruncated>false</IsTruncated>",
                    f"<IsTruncated>true</IsTruncated><NextContinuationToken>{_TOKEN}</NextContinuationToken>".encode(),
                )
                self.server.last_listing = answer  # type: ignore[attr-defined]
            self._answer(status, headers, answer)

        def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
            connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP}
                return response.status, kept, answer
            finally:
                connection.close()

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            with proxy.lock:
                proxy.requests.append((self.command, self.path, status))
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            given = next((value for name, value in headers.items() if name.lower() == "content-length"), None)
            if self.command == "HEAD" and given is not None:
                self.send_header("Content-Length", given)
            else:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

    return Handler


@contextmanager
def quirks_proxy(upstream: str) -> Iterator[QuirksProxy]:
    proxy = QuirksProxy(upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    server.last_listing = b""  # type: ignore[attr-defined]
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
