"""FakeHub: a stdlib-only local HTTP server speaking enough of the HuggingFace Hub
and ModelScope HTTP protocols for the *real* ``huggingface_hub.snapshot_download``
/ ``hf_hub_download`` and ``modelscope.snapshot_download`` / ``model_file_download``
to download from it.

Usage::

    with FakeHub() as hub:
        sha = hub.add_hf_repo("org/name", files={"config.json": b"{}"})
        rev = hub.add_ms_repo("owner/name", files={"config.json": b"{}"})
        os.environ["HF_ENDPOINT"] = hub.url          # before importing huggingface_hub
        os.environ["MODELSCOPE_ENDPOINT"] = hub.url

Fault injection (all thread-safe; ``match`` is a substring of the *decoded*
request target, path plus query, e.g. ``"/resolve/"`` or ``"FilePath=model"``;
``method`` optionally restricts a rule to ``"GET"``/``"HEAD"``/...):

    hub.fail_next(n, status=500, match=None)          # next n matching requests get `status`
    hub.hang(match=None)                              # read the request, never answer until unhang()/stop()
    hub.unhang()
    hub.truncate_next(n, match=None, after_bytes=0)   # full Content-Length, close after N body bytes
    hub.throttle(bytes_per_sec)                       # None/0 disables

A hostile mirror (for the trust tests):

    hub.tamper_json(fn, match=None, n=None)           # every matching JSON answer becomes fn(answer)
    hub.redirect(location, match=None, n=None)        # answer 302 to any location (file://, another host...)

See NOTES.md for the endpoints and what each client version calls.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

__all__ = ["FakeHub", "git_blob_sha1"]

# Fixed timestamps keep every response deterministic.
_FIXED_ISO = "2024-01-01T00:00:00.000Z"
_FIXED_TS = 1704067200  # 2024-01-01T00:00:00Z (ModelScope uses unix seconds)

# Used when add_hf_repo(lfs=None): files with these suffixes are stored as LFS,
# mirroring the default .gitattributes of a Hub repo.
_DEFAULT_LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".onnx",
    ".gguf",
    ".msgpack",
    ".model",
    ".npy",
    ".npz",
    ".pkl",
    ".tar",
    ".zip",
    ".gz",
    ".parquet",
)


def git_blob_sha1(data: bytes) -> str:
    """Git blob object id: sha1(b"blob <len>\\0" + data)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class _File:
    path: str
    data: bytes
    lfs: bool
    sha256: str
    blob_id: str  # git oid of what git stores: the content, or the LFS pointer
    pointer_size: int | None

    @classmethod
    def make(cls, path: str, data: bytes, lfs: bool) -> _File:
        sha256 = hashlib.sha256(data).hexdigest()
        if lfs:
            pointer = _lfs_pointer(sha256, len(data))
            return cls(path, data, True, sha256, git_blob_sha1(pointer), len(pointer))
        return cls(path, data, False, sha256, git_blob_sha1(data), None)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class _Repo:
    kind: str  # "hf" | "ms"
    repo_type: str
    repo_id: str
    branches: dict = field(default_factory=dict)  # name -> commit sha
    tags: dict = field(default_factory=dict)  # name -> commit sha (ModelScope)
    commits: dict = field(default_factory=dict)  # sha -> {path: _File}
    default_branch: str = "main"

    def resolve(self, rev: str | None) -> str | None:
        rev = rev or self.default_branch
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        if rev in self.commits:
            return rev
        return None


@dataclass
class _Rule:
    kind: str  # "fail" | "hang" | "truncate"
    remaining: int | None  # None = unlimited
    match: str | None
    method: str | None
    status: int = 500
    after_bytes: int = 0
    retry_after: float | None = None
    release: threading.Event = field(default_factory=threading.Event)
    transform: object = None  # "tamper": a function from the JSON answer to what a hostile mirror sends
    location: str = ""  # "redirect": where to send the client

    def matches(self, method: str, target: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.match is None or self.match in target


class _Response:
    def __init__(self, status: int = 200, headers: dict | None = None, body: bytes = b""):
        self.status = status
        self.headers = dict(headers or {})
        self.body = body


def _json(status: int, obj, headers: dict | None = None) -> _Response:
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    return _Response(status, h, json.dumps(obj).encode())


def _hf_error(status: int, code: str | None, message: str, headers: dict | None = None) -> _Response:
    h = {"X-Error-Message": message}
    if code:
        h["X-Error-Code"] = code
    h.update(headers or {})
    return _json(status, {"error": message}, h)


def _ms_error(status: int, message: str, code: int = 10010205001) -> _Response:
    return _json(status, {"Code": code, "Message": message, "Success": False, "RequestId": "fakehub"})


def _ms_ok(data) -> _Response:
    return _json(200, {"Code": 200, "Data": data, "Message": "success", "RequestId": "fakehub", "Success": True})


def _parse_range(header: str | None, size: int):
    """Return (start, end_inclusive) for a single 'bytes=' range, None if absent, 'bad' if unsatisfiable."""
    if not header:
        return None
    header = header.strip()
    if not header.startswith("bytes=") or "," in header:
        return None  # ignore what we do not understand, like many servers
    spec = header[len("bytes=") :].strip()
    start_s, _, end_s = spec.partition("-")
    try:
        if start_s == "":  # suffix range: last N bytes
            n = int(end_s)
            if n <= 0:
                return "bad"
            return (max(0, size - n), size - 1) if size else "bad"
        start = int(start_s)
        end = int(end_s) if end_s else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    hub: FakeHub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real hubs
    server_version = "FakeHub/1.0"
    sys_version = ""

    # -- plumbing ---------------------------------------------------------------
    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format, *args):
        pass

    def setup(self):
        super().setup()
        self.hub._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.hub._track(self.connection, False)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        target = unquote(self.path)
        hub._record(method, self.path, {k.lower(): v for k, v in self.headers.items()})

        rule = hub._take_rule(method, target, ("hang", "fail"))
        if rule is not None and rule.kind == "hang":
            # Request read, never answered: wait until unhang()/stop(), then drop the connection.
            rule.release.wait()
            self.close_connection = True
            self._abort()
            return
        if rule is not None and rule.kind == "fail":
            headers = {"X-Error-Message": f"fakehub injected {rule.status}"}
            if rule.retry_after is not None:
                headers["Retry-After"] = str(rule.retry_after)
            resp = _json(rule.status, {"error": f"fakehub injected {rule.status}"}, headers)
        else:
            try:
                resp = hub._route(method, self.path, self.headers, body)
            except Exception as exc:  # never kill the handler thread silently
                resp = _json(500, {"error": f"fakehub internal error: {exc!r}"})
            resp = hub._malicious(method, target, resp)
        self._send(method, target, resp)

    def _abort(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, method: str, target: str, resp: _Response) -> None:
        hub = self.hub
        body = resp.body
        headers = dict(resp.headers)
        headers.setdefault("Content-Length", str(len(body)))
        self.send_response(resp.status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if method == "HEAD" or not body:
            self.wfile.flush()
            return
        trunc = hub._take_rule(method, target, ("truncate",)) if resp.status < 300 else None
        if trunc is not None:
            body = body[: max(0, trunc.after_bytes)]
        try:
            self._write_throttled(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
            return
        if trunc is not None:
            self.close_connection = True
            self._abort()

    def _write_throttled(self, data: bytes) -> None:
        bps = self.hub._throttle_bps
        if not bps:
            self.wfile.write(data)
            return
        chunk = max(1, int(bps) // 20)
        for i in range(0, len(data), chunk):
            piece = data[i : i + chunk]
            self.wfile.write(piece)
            self.wfile.flush()
            time.sleep(len(piece) / float(bps))


class FakeHub:
    """Local fake of the HF Hub + ModelScope HTTP APIs. See module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tree_page_size: int = 1000):
        self.host = host
        self._port = port
        self.tree_page_size = tree_page_size  # HF /tree pagination (Link: rel="next")
        self._lock = threading.RLock()
        self._hf: dict[tuple[str, str], _Repo] = {}
        self._ms: dict[tuple[str, str], _Repo] = {}
        self._rules: list[_Rule] = []
        self._requests: list[tuple[str, str]] = []
        self._log: list[dict] = []
        self._conns: set = set()
        self._throttle_bps: float | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> FakeHub:
        if self._server is not None:
            return self
        server = _Server((self.host, self._port), _Handler)
        server.hub = self
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"FakeHub:{self._port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        server.shutdown()
        with self._lock:
            for rule in self._rules:
                rule.release.set()
            conns = list(self._conns)
        for conn in conns:  # drop keep-alive connections so pooled clients see the hub gone
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- request log --------------------------------------------------------------
    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, raw request target incl. query) for every request seen, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_log(self) -> list[dict]:
        """Like `requests` but with the request headers: [{method, path, headers}] (header names lower-cased)."""
        with self._lock:
            return [dict(e) for e in self._log]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._log.clear()

    def _record(self, method: str, path: str, headers: dict) -> None:
        with self._lock:
            self._requests.append((method, path))
            self._log.append({"method": method, "path": path, "headers": headers})

    def _track(self, conn, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # -- fault injection ------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        match: str | None = None,
        *,
        method: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next `n` matching requests with `status` (JSON error body)."""
        with self._lock:
            self._rules.append(_Rule("fail", n, match, method, status=status, retry_after=retry_after))

    def hang(self, match: str | None = None, *, n: int | None = None, method: str | None = None) -> None:
        """Read matching requests and never answer them until unhang()/stop().

        `n` limits how many requests get hung (default: all matching, until unhang())."""
        with self._lock:
            self._rules.append(_Rule("hang", n, match, method))

    def unhang(self) -> None:
        """Release every hung request (their connections are closed) and drop hang rules."""
        with self._lock:
            keep = []
            for rule in self._rules:
                if rule.kind == "hang":
                    rule.release.set()
                else:
                    keep.append(rule)
            self._rules = keep

    def truncate_next(
        self, n: int = 1, match: str | None = None, after_bytes: int = 0, *, method: str | None = None
    ) -> None:
        """For the next `n` matching responses that carry a body: send the headers with the
        full Content-Length, then close the connection after `after_bytes` body bytes."""
        with self._lock:
            self._rules.append(_Rule("truncate", n, match, method, after_bytes=after_bytes))

    def throttle(self, bytes_per_sec: float | None) -> None:
        """Limit every response body to roughly `bytes_per_sec` (None/0 = unlimited)."""
        self._throttle_bps = bytes_per_sec or None

    def clear_faults(self) -> None:
        self.unhang()
        with self._lock:
            self._rules.clear()
        self._throttle_bps = None

    # -- malicious modes (a hostile mirror) ------------------------------------------
    def tamper_json(self, transform, match: str | None = None, *, n: int | None = None) -> None:
        """Pass every matching JSON answer through ``transform(obj) -> obj`` (a lying mirror)."""
        with self._lock:
            self._rules.append(_Rule("tamper", n, match, None, transform=transform))

    def redirect(self, location: str, match: str | None = None, *, n: int | None = None, status: int = 302) -> None:
        """Answer matching requests with a redirect to ``location`` (any scheme, any host)."""
        with self._lock:
            self._rules.append(_Rule("redirect", n, match, None, status=status, location=location))

    def _malicious(self, method: str, target: str, resp: _Response) -> _Response:
        rule = self._take_rule(method, target, ("redirect",))
        if rule is not None:
            return _Response(rule.status, {"Location": rule.location}, b"")
        rule = self._take_rule(method, target, ("tamper",))
        if rule is None or not resp.headers.get("Content-Type", "").startswith("application/json"):
            return resp
        data = rule.transform(json.loads(resp.body))  # type: ignore[operator]
        headers = {k: v for k, v in resp.headers.items() if k != "Content-Length"}
        return _Response(resp.status, headers, json.dumps(data).encode())

    def _take_rule(self, method: str, target: str, kinds: tuple) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.kind in kinds and rule.matches(method, target):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule
        return None

    # -- repositories -------------------------------------------------------------
    @staticmethod
    def _normalize_files(files: dict, lfs) -> list[_File]:
        out = []
        for path, data in files.items():
            path = path.strip("/")
            if isinstance(data, str):
                data = data.encode()
            is_lfs = path.lower().endswith(_DEFAULT_LFS_SUFFIXES) if lfs is None else path in lfs
            out.append(_File.make(path, bytes(data), is_lfs))
        return out

    @staticmethod
    def _commit_sha(kind: str, repo_type: str, repo_id: str, files: list[_File]) -> str:
        h = hashlib.sha1(f"fakehub {kind} {repo_type} {repo_id}\n".encode())
        for f in sorted(files, key=lambda f: f.path):
            h.update(f"{f.path}\0{f.blob_id}\0{int(f.lfs)}\n".encode())
        return h.hexdigest()

    def _put(
        self, table: dict, kind: str, repo_id: str, repo_type: str, files: dict, lfs, revision: str, tag: bool
    ) -> str:
        norm = self._normalize_files(files, lfs)
        sha = self._commit_sha(kind, repo_type, repo_id, norm)
        with self._lock:
            repo = table.get((repo_type, repo_id))
            if repo is None:
                repo = _Repo(
                    kind,
                    repo_type,
                    repo_id,
                    default_branch=revision if not tag else ("master" if kind == "ms" else "main"),
                )
                table[(repo_type, repo_id)] = repo
            repo.commits[sha] = {f.path: f for f in norm}
            (repo.tags if tag else repo.branches)[revision] = sha
            if not tag and repo.default_branch not in repo.branches:
                repo.default_branch = revision
        return sha

    def add_hf_repo(self, repo_id: str, files: dict, revision: str = "main", repo_type: str = "model", lfs=None) -> str:
        """Create/update an HF repo: point branch `revision` at a commit with exactly `files`.

        `lfs`: iterable of paths stored as LFS (None = by weight-file suffix, e.g. .safetensors).
        Returns the 40-hex commit sha (deterministic from repo id and content)."""
        return self._put(self._hf, "hf", repo_id, repo_type, files, lfs, revision, tag=False)

    def move_branch(self, repo_id: str, branch: str, files: dict, repo_type: str = "model", lfs=None) -> str:
        """New commit on an existing HF branch; older commits stay addressable by sha."""
        with self._lock:
            if (repo_type, repo_id) not in self._hf:
                raise KeyError(f"unknown HF repo {repo_type}/{repo_id}")
        return self.add_hf_repo(repo_id, files, revision=branch, repo_type=repo_type, lfs=lfs)

    def add_ms_repo(
        self,
        repo_id: str,
        files: dict,
        revision: str = "master",
        repo_type: str = "model",
        lfs=None,
        tag: bool | None = None,
    ) -> str:
        """Create/update a ModelScope repo. `revision` is a branch ("master") or, when
        `tag` is true (default: any name other than master/main), a tag. Returns the commit id."""
        if tag is None:
            tag = revision not in ("master", "main")
        return self._put(self._ms, "ms", repo_id, repo_type, files, lfs, revision, tag=tag)

    def move_ms_revision(self, repo_id: str, revision: str, files: dict, repo_type: str = "model", lfs=None) -> str:
        with self._lock:
            repo = self._ms.get((repo_type, repo_id))
            if repo is None:
                raise KeyError(f"unknown ModelScope repo {repo_type}/{repo_id}")
            tag = revision in repo.tags
        return self.add_ms_repo(repo_id, files, revision=revision, repo_type=repo_type, lfs=lfs, tag=tag)

    def hf_commit(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str | None:
        with self._lock:
            repo = self._hf.get((repo_type, repo_id))
            return repo.resolve(revision) if repo else None

    def _snapshot(self, table: dict, repo_type: str, repo_id: str, rev: str | None):
        """-> (repo|None, sha|None, files|None) consistent under the lock."""
        with self._lock:
            repo = table.get((repo_type, repo_id))
            if repo is None:
                return None, None, None
            sha = repo.resolve(rev)
            if sha is None:
                return repo, None, None
            return repo, sha, dict(repo.commits[sha])

    # -- routing --------------------------------------------------------------------
    def _route(self, method: str, raw_path: str, headers, body: bytes) -> _Response:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        raw_segs = [s for s in parts.path.split("/")[1:]]
        while raw_segs and raw_segs[-1] == "":
            raw_segs.pop()
        segs = [unquote(s) for s in raw_segs]
        host = headers.get("Host") or f"{self.host}:{self._port}"

        if len(segs) >= 2 and segs[0] == "api" and segs[1] == "v1":
            return self._route_ms(method, segs[2:], query, headers)
        if len(segs) >= 2 and segs[0] == "api" and segs[1] in ("models", "datasets", "spaces", "kernels"):
            return self._route_hf_api(method, segs[1][:-1], segs[2:], query, headers, body, host, parts.path)
        if "resolve" in segs:
            return self._route_hf_resolve(method, segs, headers)
        return _hf_error(404, None, f"fakehub: no route for {method} {raw_path}")

    # ---- HuggingFace ----
    def _split_hf_repo(self, repo_type: str, rest: list[str]):
        with self._lock:
            if len(rest) >= 2 and (repo_type, f"{rest[0]}/{rest[1]}") in self._hf:
                return f"{rest[0]}/{rest[1]}", rest[2:]
            if len(rest) >= 1 and (repo_type, rest[0]) in self._hf:
                return rest[0], rest[1:]
        return None, rest

    def _route_hf_api(self, method, repo_type, rest, query, headers, body, host, raw_path) -> _Response:
        repo_id, tail = self._split_hf_repo(repo_type, rest)
        if repo_id is None:
            return _hf_error(404, "RepoNotFound", "Repository not found")
        if method == "POST" and tail[:1] == ["paths-info"] and len(tail) >= 2:
            return self._hf_paths_info(repo_type, repo_id, tail[1], body)
        if method not in ("GET", "HEAD"):
            return _hf_error(405, None, "Method not allowed")
        if not tail:
            return self._hf_info(repo_type, repo_id, None, query)
        if tail[0] == "revision" and len(tail) >= 2:
            return self._hf_info(repo_type, repo_id, "/".join(tail[1:]), query)
        if tail[0] == "tree" and len(tail) >= 2:
            return self._hf_tree(repo_type, repo_id, tail[1], "/".join(tail[2:]), query, host, raw_path)
        if tail[0] == "refs":
            with self._lock:
                repo = self._hf[(repo_type, repo_id)]
                branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()]
            return _json(200, {"branches": branches, "tags": [], "converts": []})
        return _hf_error(404, None, f"fakehub: unsupported HF api path {tail}")

    def _hf_info(self, repo_type, repo_id, rev, query) -> _Response:
        repo, sha, files = self._snapshot(self._hf, repo_type, repo_id, rev)
        if repo is None:
            return _hf_error(404, "RepoNotFound", "Repository not found")
        if sha is None:
            return _hf_error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        blobs = _truthy(query.get("blobs"))
        siblings = []
        for f in sorted(files.values(), key=lambda f: f.path):
            s = {"rfilename": f.path}
            if blobs:
                s["size"] = f.size
                s["blobId"] = f.blob_id
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            siblings.append(s)
        author = repo_id.split("/")[0] if "/" in repo_id else None
        info = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": author,
            "sha": sha,
            "lastModified": _FIXED_ISO,
            "createdAt": _FIXED_ISO,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(f.size for f in files.values()),
        }
        if repo_type == "model":
            info["modelId"] = repo_id
            info["library_name"] = None
            info["spaces"] = []
        return _json(200, info)

    @staticmethod
    def _hf_file_entry(f: _File, sha: str, expand: bool) -> dict:
        e = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
        if f.lfs:
            e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        if expand:
            e["lastCommit"] = {"id": sha, "title": "fakehub commit", "date": _FIXED_ISO}
        return e

    @staticmethod
    def _hf_dir_entry(path: str, sha: str, expand: bool) -> dict:
        e = {
            "type": "directory",
            "oid": hashlib.sha1(f"tree {sha} {path}".encode()).hexdigest(),
            "size": 0,
            "path": path,
        }
        if expand:
            e["lastCommit"] = {"id": sha, "title": "fakehub commit", "date": _FIXED_ISO}
        return e

    @staticmethod
    def _all_dirs(files) -> set:
        dirs = set()
        for p in files:
            d = posixpath.dirname(p)
            while d:
                dirs.add(d)
                d = posixpath.dirname(d)
        return dirs

    def _hf_tree(self, repo_type, repo_id, rev, path_in_repo, query, host, raw_path) -> _Response:
        repo, sha, files = self._snapshot(self._hf, repo_type, repo_id, rev)
        if repo is None:
            return _hf_error(404, "RepoNotFound", "Repository not found")
        if sha is None:
            return _hf_error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        recursive = _truthy(query.get("recursive"))
        expand = _truthy(query.get("expand"))
        root = path_in_repo.strip("/")
        dirs = self._all_dirs(files)
        if root and root not in dirs:
            return _hf_error(404, "EntryNotFound", f"{root} does not exist on {rev}", {"X-Repo-Commit": sha})
        prefix = root + "/" if root else ""

        def inside(p: str) -> bool:
            if not p.startswith(prefix) or p == root:
                return False
            return recursive or "/" not in p[len(prefix) :]

        entries = [self._hf_dir_entry(d, sha, expand) for d in sorted(dirs) if inside(d)]
        entries += [self._hf_file_entry(files[p], sha, expand) for p in sorted(files) if inside(p)]
        entries.sort(key=lambda e: (e["path"].count("/"), e["type"] != "directory", e["path"]))

        page = max(1, int(self.tree_page_size))
        try:
            start = int(query.get("cursor") or 0)
        except ValueError:
            return _hf_error(400, None, "bad cursor")
        chunk = entries[start : start + page]
        headers = {"X-Repo-Commit": sha}
        if start + page < len(entries):
            q = {k: v for k, v in query.items() if k != "cursor"}
            q["cursor"] = str(start + page)
            headers["Link"] = f'<http://{host}{raw_path}?{urlencode(q)}>; rel="next"'
        return _json(200, chunk, headers)

    def _hf_paths_info(self, repo_type, repo_id, rev, body: bytes) -> _Response:
        repo, sha, files = self._snapshot(self._hf, repo_type, repo_id, rev)
        if repo is None:
            return _hf_error(404, "RepoNotFound", "Repository not found")
        if sha is None:
            return _hf_error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        form = parse_qs(body.decode(errors="replace"), keep_blank_values=True)
        if not form and body.strip().startswith(b"{"):
            form = {k: (v if isinstance(v, list) else [v]) for k, v in json.loads(body).items()}
        expand = _truthy(str((form.get("expand") or ["false"])[-1]))
        dirs = self._all_dirs(files)
        out = []
        for p in form.get("paths", []):
            p = str(p).strip("/")
            if p in files:
                out.append(self._hf_file_entry(files[p], sha, expand))
            elif p in dirs:
                out.append(self._hf_dir_entry(p, sha, expand))
        return _json(200, out)

    def _route_hf_resolve(self, method, segs, headers) -> _Response:
        i = segs.index("resolve")
        prefix = segs[:i]
        repo_type = "model"
        if prefix and prefix[0] in ("datasets", "spaces", "kernels"):
            repo_type = prefix[0][:-1]
            prefix = prefix[1:]
        repo_id = "/".join(prefix)
        if len(segs) < i + 3:
            return _hf_error(404, "EntryNotFound", "missing revision or filename")
        rev = segs[i + 1]
        filename = "/".join(segs[i + 2 :])
        if method not in ("GET", "HEAD"):
            return _hf_error(405, None, "Method not allowed")
        repo, sha, files = self._snapshot(self._hf, repo_type, repo_id, rev)
        if repo is None:
            return _hf_error(404, "RepoNotFound", "Repository not found")
        if sha is None:
            return _hf_error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        f = files.get(filename)
        if f is None:
            return _hf_error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": sha})
        h = {"X-Repo-Commit": sha}
        if f.lfs:
            h["ETag"] = f'"{f.sha256}"'
            h["X-Linked-Etag"] = f'"{f.sha256}"'
            h["X-Linked-Size"] = str(f.size)
        else:
            h["ETag"] = f'"{f.blob_id}"'
        return self._file_response(f, headers, h)

    # ---- shared file body with Range support ----
    @staticmethod
    def _file_response(f: _File, req_headers, extra: dict) -> _Response:
        h = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'attachment; filename="{posixpath.basename(f.path)}"',
        }
        h.update(extra)
        rng = _parse_range(req_headers.get("Range"), f.size)
        if rng == "bad":
            h["Content-Range"] = f"bytes */{f.size}"
            return _Response(416, h, b"")
        if rng is None:
            return _Response(200, h, f.data)
        start, end = rng
        h["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        return _Response(206, h, f.data[start : end + 1])

    # ---- ModelScope ----
    def _route_ms(self, method, rest, query, headers) -> _Response:
        if rest[:2] == ["repos", "internalAccelerationInfo"]:
            # Region probe of modelscope/modelscope_hub (0.2 s timeout); an empty address = no region.
            return _ms_ok({"InternalRegionQueryAddress": ""})
        if len(rest) < 3 or rest[0] not in ("models", "datasets"):
            return _ms_error(404, f"fakehub: no ModelScope route for {rest}")
        repo_type = rest[0][:-1]
        repo_id = f"{rest[1]}/{rest[2]}"
        tail = rest[3:]
        with self._lock:
            repo = self._ms.get((repo_type, repo_id))
        if repo is None:
            return _ms_error(404, f"{repo_type} {repo_id} not found")
        if method not in ("GET", "HEAD"):
            return _ms_error(405, "method not allowed")
        if not tail:
            return self._ms_info(repo)
        if tail == ["revisions"]:
            return self._ms_revisions(repo)
        if tail == ["repo", "files"]:
            return self._ms_files(repo, query)
        if tail == ["repo"]:
            return self._ms_file(repo, query, headers)
        return _ms_error(404, f"fakehub: unsupported ModelScope path {tail}")

    def _ms_info(self, repo: _Repo) -> _Response:
        owner, name = repo.repo_id.split("/", 1)
        with self._lock:
            sha = repo.resolve(None)
        return _ms_ok(
            {
                "Id": int(hashlib.sha1(repo.repo_id.encode()).hexdigest()[:8], 16),
                "Name": name,
                "Path": owner,
                "ChineseName": "",
                "Description": "fakehub",
                "CreatedTime": _FIXED_TS,
                "LastUpdatedTime": _FIXED_TS,
                "Revision": sha,
                "Downloads": 0,
                "Stars": 0,
                "IsPublished": 1,
                "Visibility": 5,
            }
        )

    def _ms_revisions(self, repo: _Repo) -> _Response:
        def detail(name, sha):
            return {"Revision": name, "CreatedAt": _FIXED_TS, "CommitId": sha, "Message": "", "Author": "fakehub"}

        with self._lock:
            branches = [detail(n, s) for n, s in repo.branches.items()]
            tags = [detail(n, s) for n, s in repo.tags.items()]
        return _ms_ok({"RevisionMap": {"Branches": branches, "Tags": tags}})

    def _ms_files(self, repo: _Repo, query) -> _Response:
        rev = query.get("Revision") or None
        _, sha, files = self._snapshot(self._ms, repo.repo_type, repo.repo_id, rev)
        if sha is None:
            return _ms_error(404, f"revision {rev} not found")
        recursive = _truthy(query.get("Recursive"))
        root = (query.get("Root") or "").strip("/")
        dirs = self._all_dirs(files)
        if root and root not in dirs:
            return _ms_error(404, f"path {root} not found")
        prefix = root + "/" if root else ""

        def inside(p: str) -> bool:
            return p.startswith(prefix) and p != root and (recursive or "/" not in p[len(prefix) :])

        def entry(path: str, f: _File | None) -> dict:
            return {
                "Name": posixpath.basename(path),
                "Path": path,
                "Type": "blob" if f else "tree",
                "Size": f.size if f else 0,
                "Sha256": f.sha256 if f else "",
                "Id": f.blob_id if f else hashlib.sha1(f"tree {sha} {path}".encode()).hexdigest(),
                "IsLFS": bool(f and f.lfs),
                "Mode": "33188" if f else "16384",
                "Revision": sha,
                "CommitId": sha,
                "CommitMessage": "fakehub commit",
                "CommitterName": "fakehub",
                "CommittedDate": _FIXED_TS,
            }

        out = [entry(d, None) for d in sorted(dirs) if inside(d)]
        out += [entry(p, files[p]) for p in sorted(files) if inside(p)]
        return _ms_ok({"Files": out, "IsVisual": 0})

    def _ms_file(self, repo: _Repo, query, headers) -> _Response:
        rev = query.get("Revision") or None
        path = (query.get("FilePath") or "").strip("/")
        _, sha, files = self._snapshot(self._ms, repo.repo_type, repo.repo_id, rev)
        if sha is None:
            return _ms_error(404, f"revision {rev} not found")
        f = files.get(path)
        if f is None:
            return _ms_error(404, f"file {path} not found")
        return self._file_response(f, headers, {"ETag": f'"{f.blob_id}"'})
