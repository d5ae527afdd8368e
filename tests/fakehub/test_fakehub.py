"""Drive the REAL huggingface_hub and modelscope clients against FakeHub.

Every client call runs in a subprocess (``sys.executable``) because both clients
read their endpoint/offline/timeout settings from the environment at import time.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .server import FakeHub, git_blob_sha1

pytest.importorskip("huggingface_hub")
pytest.importorskip("modelscope")

MARK = "@@FAKEHUB_RESULT@@"

CONFIG = b'{"architectures": ["Fake"], "hidden_size": 8}\n'
WEIGHTS = bytes(range(256)) * 800  # 204800 bytes, LFS
README = b"# fake model\n"
NESTED = b"nested file\n"

HF_FILES = {
    "config.json": CONFIG,
    "model.safetensors": WEIGHTS,
    "README.md": README,
    "sub/dir/x.txt": NESTED,
}
MS_REPO = "owner/Qwen2.5-0.5B"  # dotted name on purpose: old SDKs escape '.' as '___'
MS_FILES = {"config.json": CONFIG, "model.safetensors": WEIGHTS, "sub/dir/x.txt": NESTED}


# -- helpers -----------------------------------------------------------------------
@pytest.fixture
def hub():
    with FakeHub() as h:
        yield h


def _base_env(tmp_path: Path) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "MODELSCOPE_", "TRANSFORMERS_")) and k != "PYTHONPATH"
    }
    env.update(
        HOME=str(tmp_path / "home"),
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_XET="1",
        MODELSCOPE_HOME=str(tmp_path / "ms_home"),
        MODELSCOPE_CACHE=str(tmp_path / "ms"),
        PYTHONUNBUFFERED="1",
    )
    return env


def hf_env(tmp_path: Path, hub: FakeHub | None, **extra) -> dict:
    env = _base_env(tmp_path)
    # An unroutable endpoint when the hub is gone: nothing may silently reach the internet.
    env["HF_ENDPOINT"] = hub.url if hub is not None else "http://127.0.0.1:9"
    env.update(extra)
    return env


def ms_env(tmp_path: Path, hub: FakeHub | None, **extra) -> dict:
    env = _base_env(tmp_path)
    env["MODELSCOPE_ENDPOINT"] = hub.url if hub is not None else "http://127.0.0.1:9"
    env.update(extra)
    return env


def run_client(code: str, env: dict, timeout: float = 30) -> dict:
    """Run `code` (which must set `result`) in a fresh interpreter; return a dict with
    ok/result or ok=False/error/mro/msg, plus elapsed seconds and the client's stderr."""
    script = (
        "import json, time, traceback\n"
        "_t0 = time.monotonic()\n"
        "try:\n" + textwrap.indent(textwrap.dedent(code), "    ") + "\n    _out = {'ok': True, 'result': result}\n"
        "except BaseException as _e:\n"
        "    _out = {'ok': False, 'error': type(_e).__name__,\n"
        "            'mro': [c.__name__ for c in type(_e).__mro__], 'msg': str(_e)[:3000],\n"
        "            'tb': traceback.format_exc()[-3000:]}\n"
        "_out['elapsed'] = time.monotonic() - _t0\n"
        f"print({MARK!r} + json.dumps(_out, default=str), flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            out = json.loads(line[len(MARK) :])
            out["stderr"] = proc.stderr
            return out
    raise AssertionError(
        f"client produced no result (rc={proc.returncode})\nstdout:{proc.stdout[-2000:]}\nstderr:{proc.stderr[-4000:]}"
    )


def ok(res: dict):
    assert res["ok"], f"client failed: {res.get('error')}: {res.get('msg')}\n{res.get('tb')}"
    return res["result"]


def fetch(hub: FakeHub, method: str, path: str, headers: dict | None = None):
    req = urllib.request.Request(hub.url + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _count(hub: FakeHub, method: str, needle: str) -> int:
    return sum(1 for m, p in hub.requests if m == method and needle in p)


# -- server protocol (plain HTTP, no client) ---------------------------------------
def test_hf_resolve_headers_range_and_errors(hub):
    sha = hub.add_hf_repo("org/name", files=HF_FILES, lfs={"model.safetensors"})
    assert len(sha) == 40 and sha == hub.add_hf_repo("org/name", files=HF_FILES, lfs={"model.safetensors"})

    st, h, body = fetch(hub, "HEAD", "/org/name/resolve/main/config.json")
    assert st == 200 and body == b""
    assert h["X-Repo-Commit"] == sha
    assert h["ETag"] == f'"{git_blob_sha1(CONFIG)}"'
    assert int(h["Content-Length"]) == len(CONFIG)
    assert "X-Linked-Etag" not in h and not any(k.lower().startswith("x-xet") for k in h)

    sha256 = hashlib.sha256(WEIGHTS).hexdigest()
    st, h, _ = fetch(hub, "HEAD", "/org/name/resolve/main/model.safetensors")
    assert h["X-Linked-Etag"] == f'"{sha256}"' and h["ETag"] == f'"{sha256}"'
    assert int(h["X-Linked-Size"]) == len(WEIGHTS)

    st, h, body = fetch(hub, "GET", "/org/name/resolve/main/model.safetensors", {"Range": "bytes=1000-"})
    assert st == 206 and body == WEIGHTS[1000:]
    assert h["Content-Range"] == f"bytes 1000-{len(WEIGHTS) - 1}/{len(WEIGHTS)}"
    st, h, body = fetch(hub, "GET", "/org/name/resolve/main/config.json", {"Range": "bytes=2-5"})
    assert st == 206 and body == CONFIG[2:6]
    st, h, _ = fetch(hub, "GET", "/org/name/resolve/main/config.json", {"Range": f"bytes={len(CONFIG)}-"})
    assert st == 416 and h["Content-Range"] == f"bytes */{len(CONFIG)}"

    assert fetch(hub, "HEAD", "/org/missing/resolve/main/config.json")[1]["X-Error-Code"] == "RepoNotFound"
    assert fetch(hub, "HEAD", "/org/name/resolve/nope/config.json")[1]["X-Error-Code"] == "RevisionNotFound"
    st, h, _ = fetch(hub, "HEAD", "/org/name/resolve/main/nope.bin")
    assert st == 404 and h["X-Error-Code"] == "EntryNotFound" and h["X-Repo-Commit"] == sha

    st, _, body = fetch(hub, "GET", "/api/models/org/name/tree/main/sub?recursive=false")
    assert st == 200 and [e["path"] for e in json.loads(body)] == ["sub/dir"]
    st, _, body = fetch(hub, "GET", f"/api/models/org/name/tree/{sha}?recursive=true")
    entries = {e["path"]: e for e in json.loads(body)}
    assert entries["model.safetensors"]["lfs"]["oid"] == sha256
    assert entries["config.json"]["oid"] == git_blob_sha1(CONFIG) and "lfs" not in entries["config.json"]
    assert entries["sub"]["type"] == "directory"
    assert [m for m, _ in hub.requests].count("HEAD") == 5
    hub.clear_requests()
    assert hub.requests == []


def test_ms_endpoints_plain(hub):
    rev = hub.add_ms_repo(MS_REPO, files=MS_FILES)
    st, _, body = fetch(hub, "GET", f"/api/v1/models/{MS_REPO}/repo/files?Revision=master&Recursive=True")
    data = json.loads(body)
    assert st == 200 and data["Success"] is True and data["Code"] == 200
    files = {f["Path"]: f for f in data["Data"]["Files"] if f["Type"] == "blob"}
    assert set(files) == set(MS_FILES)
    assert files["model.safetensors"]["Sha256"] == hashlib.sha256(WEIGHTS).hexdigest()
    assert files["sub/dir/x.txt"]["Name"] == "x.txt" and files["config.json"]["Revision"] == rev
    st, _, body = fetch(hub, "GET", f"/api/v1/models/{MS_REPO}/repo?Revision=master&FilePath=sub%2Fdir%2Fx.txt")
    assert st == 200 and body == NESTED
    st, _h, body = fetch(
        hub, "GET", f"/api/v1/models/{MS_REPO}/repo?Revision={rev}&FilePath=model.safetensors", {"Range": "bytes=10-"}
    )
    assert st == 206 and body == WEIGHTS[10:]
    st, _, body = fetch(hub, "GET", f"/api/v1/models/{MS_REPO}/revisions")
    assert json.loads(body)["Data"]["RevisionMap"]["Branches"][0]["Revision"] == "master"
    assert fetch(hub, "GET", "/api/v1/models/owner/missing/repo/files")[0] == 404


def test_throttle_slows_bodies(hub):
    hub.add_hf_repo("org/name", files={"blob.bin": b"x" * 20000}, lfs=set())
    hub.throttle(40000)
    t0 = time.monotonic()
    st, _, body = fetch(hub, "GET", "/org/name/resolve/main/blob.bin")
    assert st == 200 and len(body) == 20000
    assert time.monotonic() - t0 >= 0.4
    hub.throttle(None)
    t0 = time.monotonic()
    fetch(hub, "GET", "/org/name/resolve/main/blob.bin")
    assert time.monotonic() - t0 < 0.4


def test_stop_closes_listener_keepalive_and_hung_requests():
    hub = FakeHub().start()
    hub.add_hf_repo("org/name", files={"config.json": CONFIG})
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=5)
    conn.request("GET", "/org/name/resolve/main/config.json")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == CONFIG and not resp.will_close  # kept alive

    hub.hang(match="hung")
    outcome = {}

    def hung_client():
        t0 = time.monotonic()
        try:
            fetch(hub, "GET", "/org/name/resolve/main/hung")
            outcome["err"] = None
        except Exception as e:  # connection dropped by stop()
            outcome["err"] = type(e).__name__
        outcome["t"] = time.monotonic() - t0

    t = threading.Thread(target=hung_client)
    t.start()
    deadline = time.monotonic() + 5
    while _count(hub, "GET", "hung") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert t.is_alive()  # really hung
    t0 = time.monotonic()
    hub.stop()
    t.join(5)
    assert not t.is_alive() and outcome["err"] is not None and time.monotonic() - t0 < 3
    assert not hub.running
    with pytest.raises(OSError):  # the pooled keep-alive connection is gone too
        conn.request("GET", "/org/name/resolve/main/config.json")
        conn.getresponse()
    with pytest.raises(OSError):
        urllib.request.urlopen(hub.url + "/org/name/resolve/main/config.json", timeout=2)


# -- huggingface_hub ----------------------------------------------------------------
def test_hf_snapshot_download_cache_layout_then_offline(hub, tmp_path):
    sha = hub.add_hf_repo("org/name", files=HF_FILES, lfs={"model.safetensors"})
    cache = tmp_path / "hub"
    res = ok(
        run_client(
            f"""
        from huggingface_hub import snapshot_download
        result = snapshot_download("org/name", revision="main", cache_dir={str(cache)!r},
                                   allow_patterns=["*.json", "*.safetensors", "sub/*"])
    """,
            hf_env(tmp_path, hub),
        )
    )

    repo_dir = cache / "models--org--name"
    snap = repo_dir / "snapshots" / sha
    assert Path(res) == snap
    assert (snap / "config.json").read_bytes() == CONFIG
    assert (snap / "model.safetensors").read_bytes() == WEIGHTS
    assert (snap / "sub/dir/x.txt").read_bytes() == NESTED
    assert not (snap / "README.md").exists()  # filtered by allow_patterns
    assert (repo_dir / "refs" / "main").read_text() == sha
    blobs = {p.name for p in (repo_dir / "blobs").iterdir()}
    assert blobs == {git_blob_sha1(CONFIG), git_blob_sha1(NESTED), hashlib.sha256(WEIGHTS).hexdigest()}
    assert (snap / "model.safetensors").is_symlink()
    assert os.readlink(snap / "config.json") == f"../../blobs/{git_blob_sha1(CONFIG)}"
    assert (repo_dir / "trees" / f"{sha}.json").is_file()  # hf_hub 2.x tree-listing cache
    assert ("GET", "/api/models/org/name/revision/main") in hub.requests
    assert _count(hub, "GET", f"/api/models/org/name/tree/{sha}") == 1
    assert _count(hub, "GET", "/resolve/") == 3 and _count(hub, "GET", "README.md") == 0

    hub.stop()
    seen = len(hub.requests)
    res = ok(
        run_client(
            f"""
        from huggingface_hub import snapshot_download
        result = snapshot_download("org/name", revision="main", cache_dir={str(cache)!r},
                                   allow_patterns=["*.json", "*.safetensors", "sub/*"], local_files_only=True)
    """,
            hf_env(tmp_path, hub, HF_HUB_OFFLINE="1"),
        )
    )
    assert Path(res) == snap and len(hub.requests) == seen


def test_hf_move_branch_refresh_and_old_sha(hub, tmp_path):
    sha1 = hub.add_hf_repo("org/name", files={"config.json": CONFIG, "w.bin": b"v1" * 100})
    cache = str(tmp_path / "hub")
    code = f"""
        from huggingface_hub import snapshot_download
        result = snapshot_download("org/name", revision=REV, cache_dir={cache!r})
    """
    first = ok(run_client(code.replace("REV", '"main"'), hf_env(tmp_path, hub)))
    sha2 = hub.move_branch("org/name", "main", files={"config.json": CONFIG, "w.bin": b"v2" * 100})
    assert sha2 != sha1 and hub.hf_commit("org/name") == sha2
    second = ok(run_client(code.replace("REV", '"main"'), hf_env(tmp_path, hub)))
    old = ok(run_client(code.replace("REV", repr(sha1)), hf_env(tmp_path, hub)))
    assert first.endswith(sha1) and second.endswith(sha2) and old == first
    assert Path(second, "w.bin").read_bytes() == b"v2" * 100
    assert Path(old, "w.bin").read_bytes() == b"v1" * 100
    assert (tmp_path / "hub/models--org--name/refs/main").read_text() == sha2
    # config.json is identical in both commits: one blob, shared by both snapshots
    assert os.path.realpath(Path(first, "config.json")) == os.path.realpath(Path(second, "config.json"))


def test_hf_dataset_repo_and_paginated_tree(tmp_path):
    files = {f"data/part-{i}.txt": f"row {i}\n".encode() for i in range(5)}
    with FakeHub(tree_page_size=2) as hub:
        sha = hub.add_hf_repo("org/ds", files=files, repo_type="dataset")
        res = ok(
            run_client(
                f"""
            from huggingface_hub import snapshot_download
            result = snapshot_download("org/ds", repo_type="dataset", cache_dir={str(tmp_path / "hub")!r})
        """,
                hf_env(tmp_path, hub),
            )
        )
        assert Path(res) == tmp_path / "hub" / "datasets--org--ds" / "snapshots" / sha
        for name, data in files.items():
            assert Path(res, name).read_bytes() == data
        tree_calls = [p for m, p in hub.requests if "/api/datasets/org/ds/tree/" in p]
        assert len(tree_calls) == 3 and "cursor=" in tree_calls[-1]  # 1 dir + 5 files, 2 per page


def test_hf_not_found_errors(hub, tmp_path):
    hub.add_hf_repo("org/name", files={"config.json": CONFIG})
    res = ok(
        run_client(
            f"""
        from huggingface_hub import snapshot_download, hf_hub_download
        result = {{}}
        for label, call in [
            ("repo", lambda: snapshot_download("org/missing", cache_dir={str(tmp_path / "hub")!r})),
            ("rev", lambda: snapshot_download("org/name", revision="nope", cache_dir={str(tmp_path / "hub")!r})),
            ("file", lambda: hf_hub_download("org/name", "nope.bin", cache_dir={str(tmp_path / "hub")!r})),
        ]:
            try:
                call()
                result[label] = None
            except Exception as e:
                result[label] = [c.__name__ for c in type(e).__mro__]
    """,
            hf_env(tmp_path, hub),
        )
    )
    assert "RepositoryNotFoundError" in res["repo"]
    assert "RevisionNotFoundError" in res["rev"]
    assert "EntryNotFoundError" in res["file"]


def test_hf_fail_next_500_then_success(hub, tmp_path):
    hub.add_hf_repo("org/name", files={"config.json": CONFIG})
    hub.fail_next(1, status=500, match="/resolve/")
    res = ok(
        run_client(
            f"""
        from huggingface_hub import snapshot_download
        result = snapshot_download("org/name", cache_dir={str(tmp_path / "hub")!r})
    """,
            hf_env(tmp_path, hub),
        )
    )
    assert Path(res, "config.json").read_bytes() == CONFIG
    assert _count(hub, "HEAD", "/resolve/") == 2  # the 500 was answered, the client asked again


def test_hf_fail_api_500_surfaces_as_error(hub, tmp_path):
    hub.add_hf_repo("org/name", files={"config.json": CONFIG})
    hub.fail_next(1, status=503, match="/api/models/")
    res = run_client(
        f"""
        from huggingface_hub import snapshot_download
        result = snapshot_download("org/name", cache_dir={str(tmp_path / "hub")!r})
    """,
        hf_env(tmp_path, hub),
    )
    assert not res["ok"] and "LocalEntryNotFoundError" in res["mro"], res
    # the next attempt (rule consumed) works
    ok(
        run_client(
            f"""
        from huggingface_hub import snapshot_download
        result = snapshot_download("org/name", cache_dir={str(tmp_path / "hub")!r})
    """,
            hf_env(tmp_path, hub),
        )
    )


def test_hf_truncated_body_is_retried(hub, tmp_path):
    hub.add_hf_repo("org/name", files={"model.safetensors": WEIGHTS})
    hub.truncate_next(1, match="model.safetensors", after_bytes=1000, method="GET")
    res = ok(
        run_client(
            f"""
        from huggingface_hub import snapshot_download
        result = snapshot_download("org/name", cache_dir={str(tmp_path / "hub")!r})
    """,
            hf_env(tmp_path, hub),
        )
    )
    assert Path(res, "model.safetensors").read_bytes() == WEIGHTS
    gets = [e for e in hub.request_log if e["method"] == "GET" and "model.safetensors" in e["path"]]
    assert len(gets) == 2
    # hf_hub 2.x reads the body in 10 MiB chunks: bytes of an unfinished chunk are dropped, so a
    # cut before 10 MiB is retried from 0 (no Range); bigger cuts resume with "Range: bytes=N-".
    assert "range" not in gets[0]["headers"] and gets[1]["headers"].get("range") in (None, "bytes=0-")
    assert not list((tmp_path / "hub" / "models--org--name" / "blobs").glob("*.incomplete"))


def test_hf_hang_download_times_out_then_retries(hub, tmp_path):
    hub.add_hf_repo("org/name", files={"config.json": CONFIG})
    hub.hang(match="/resolve/", method="GET", n=1)  # only the first GET is swallowed
    res = run_client(
        f"""
        from huggingface_hub import snapshot_download
        result = snapshot_download("org/name", cache_dir={str(tmp_path / "hub")!r})
    """,
        hf_env(tmp_path, hub, HF_HUB_DOWNLOAD_TIMEOUT="1", HF_HUB_ETAG_TIMEOUT="1"),
        timeout=20,
    )
    assert Path(ok(res), "config.json").read_bytes() == CONFIG
    assert _count(hub, "GET", "/resolve/") == 2
    assert 1 <= res["elapsed"] < 10
    assert "timed out" in res["stderr"]  # the first GET really hit the 1 s read timeout


def test_hf_hang_metadata_call_raises_timeout(hub, tmp_path):
    hub.add_hf_repo("org/name", files={"config.json": CONFIG})
    hub.hang(match="/resolve/")
    res = run_client(
        """
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        result = get_hf_file_metadata(hf_hub_url("org/name", "config.json"), timeout=1)
    """,
        hf_env(tmp_path, hub),
        timeout=20,
    )
    assert not res["ok"] and "TimeoutException" in res["mro"], res
    assert res["elapsed"] < 8
    hub.unhang()
    st, _, body = fetch(hub, "GET", "/org/name/resolve/main/config.json")
    assert st == 200 and body == CONFIG


def test_hf_hang_on_repo_info_is_not_bounded_by_client(hub, tmp_path):
    """huggingface_hub 2.x calls /api/.../revision/... with timeout=None: a hung API hangs
    snapshot_download forever (HF_HUB_ETAG_TIMEOUT does not apply). Callers need their own deadline."""
    hub.add_hf_repo("org/name", files={"config.json": CONFIG})
    hub.hang(match="/api/models/")
    with pytest.raises(subprocess.TimeoutExpired):
        run_client(
            f"""
            from huggingface_hub import snapshot_download
            result = snapshot_download("org/name", cache_dir={str(tmp_path / "hub")!r})
        """,
            hf_env(tmp_path, hub, HF_HUB_ETAG_TIMEOUT="1", HF_HUB_DOWNLOAD_TIMEOUT="1"),
            timeout=4,
        )
    assert _count(hub, "GET", "/api/models/org/name/revision/main") == 1


# -- modelscope ---------------------------------------------------------------------
def test_ms_snapshot_download_layout_then_offline(hub, tmp_path):
    hub.add_ms_repo(MS_REPO, files=MS_FILES)
    cache = tmp_path / "ms"
    res = ok(
        run_client(
            f"""
        from modelscope import snapshot_download
        result = snapshot_download({MS_REPO!r}, revision="master", cache_dir={str(cache)!r})
    """,
            ms_env(tmp_path, hub),
        )
    )
    # modelscope 1.38+ (modelscope_hub): {cache}/models/{owner}--{name}/snapshots/{revision NAME}/, no '___'
    snap = cache / "models" / "owner--Qwen2.5-0.5B" / "snapshots" / "master"
    assert Path(res) == snap
    for name, data in MS_FILES.items():
        assert (snap / name).read_bytes() == data
        assert not (snap / name).is_symlink()
    assert not any(p.name in (".msc", ".mdl", ".mv") for p in cache.rglob("*"))
    assert not (cache / "models" / "owner" / "Qwen2___5-0___5B").exists()
    assert _count(hub, "GET", f"/api/v1/models/{MS_REPO}/repo/files?Revision=master&Recursive=True") == 1
    assert _count(hub, "GET", f"/api/v1/models/{MS_REPO}/repo?Revision=master&FilePath=") == 3

    hub.stop()
    seen = len(hub.requests)
    res = ok(
        run_client(
            f"""
        from modelscope import snapshot_download
        result = snapshot_download({MS_REPO!r}, revision="master", cache_dir={str(cache)!r}, local_files_only=True)
    """,
            ms_env(tmp_path, hub),
        )
    )
    assert Path(res) == snap and len(hub.requests) == seen


def test_ms_tag_revision_and_model_file_download(hub, tmp_path):
    hub.add_ms_repo(MS_REPO, files=MS_FILES)
    hub.add_ms_repo(MS_REPO, files={"config.json": b"{}"}, revision="v1.0")  # a tag
    cache = tmp_path / "ms"
    res = ok(
        run_client(
            f"""
        from modelscope import snapshot_download
        from modelscope.hub.file_download import model_file_download
        result = [snapshot_download({MS_REPO!r}, revision="v1.0", cache_dir={str(cache)!r}),
                  model_file_download({MS_REPO!r}, "sub/dir/x.txt", revision="master", cache_dir={str(cache)!r}),
                  model_file_download({MS_REPO!r}, "config.json", cache_dir={str(cache)!r})]
    """,
            ms_env(tmp_path, hub),
        )
    )
    tag_dir, single, default_rev = map(Path, res)
    snaps = cache / "models" / "owner--Qwen2.5-0.5B" / "snapshots"
    assert tag_dir == snaps / "v1.0"
    assert sorted(p.name for p in tag_dir.iterdir()) == ["config.json"]
    assert (tag_dir / "config.json").read_bytes() == b"{}"
    assert single == snaps / "master" / "sub/dir/x.txt" and single.read_bytes() == NESTED
    # Quirk of modelscope 1.40: model_file_download(revision=None) resolves the newest *tag*
    # via /revisions ("release mode"), while snapshot_download(revision=None) uses "master".
    assert default_rev == snaps / "v1.0" / "config.json"
    assert _count(hub, "GET", f"/api/v1/models/{MS_REPO}/revisions") == 1


def test_ms_missing_repo_raises(hub, tmp_path):
    res = run_client(
        """
        from modelscope import snapshot_download
        result = snapshot_download("owner/missing")
    """,
        ms_env(tmp_path, hub),
    )
    assert not res["ok"] and "HTTPError" in res["mro"], res


def test_ms_fail_next_500_then_success(hub, tmp_path):
    hub.add_ms_repo(MS_REPO, files={"config.json": CONFIG})
    hub.fail_next(1, status=500, match="FilePath=config.json")
    res = ok(
        run_client(
            f"""
        from modelscope import snapshot_download
        result = snapshot_download({MS_REPO!r}, cache_dir={str(tmp_path / "ms")!r})
    """,
            ms_env(tmp_path, hub),
        )
    )
    assert Path(res, "config.json").read_bytes() == CONFIG
    assert _count(hub, "GET", "FilePath=config.json") == 2


def test_ms_truncated_body_is_resumed_with_range(hub, tmp_path):
    hub.add_ms_repo(MS_REPO, files={"model.safetensors": WEIGHTS})
    hub.truncate_next(1, match="FilePath=model.safetensors", after_bytes=1000)
    res = ok(
        run_client(
            f"""
        from modelscope import snapshot_download
        result = snapshot_download({MS_REPO!r}, cache_dir={str(tmp_path / "ms")!r})
    """,
            ms_env(tmp_path, hub),
        )
    )
    assert Path(res, "model.safetensors").read_bytes() == WEIGHTS
    gets = [e for e in hub.request_log if "FilePath=model.safetensors" in e["path"]]
    assert len(gets) == 2 and gets[1]["headers"].get("range") == "bytes=1000-"


def test_ms_truncated_body_without_retries_is_an_error(hub, tmp_path):
    hub.add_ms_repo(MS_REPO, files={"model.safetensors": WEIGHTS})
    hub.truncate_next(1, match="FilePath=model.safetensors", after_bytes=1000)
    res = run_client(
        f"""
        from modelscope import snapshot_download
        result = snapshot_download({MS_REPO!r}, cache_dir={str(tmp_path / "ms")!r})
    """,
        ms_env(tmp_path, hub, MODELSCOPE_DOWNLOAD_MAX_RETRIES="0"),
    )
    assert not res["ok"], res
    snap = tmp_path / "ms" / "models" / "owner--Qwen2.5-0.5B" / "snapshots" / "master"
    assert not (snap / "model.safetensors").exists()  # no partial file under the final name


def test_ms_hang_times_out(hub, tmp_path):
    hub.add_ms_repo(MS_REPO, files={"config.json": CONFIG})
    hub.hang(match="FilePath=")
    res = run_client(
        f"""
        from modelscope import snapshot_download
        result = snapshot_download({MS_REPO!r}, cache_dir={str(tmp_path / "ms")!r})
    """,
        ms_env(tmp_path, hub, MODELSCOPE_DOWNLOAD_TIMEOUT="1", MODELSCOPE_DOWNLOAD_MAX_RETRIES="0"),
        timeout=20,
    )
    assert not res["ok"] and "FileDownloadError" in res["mro"], res
    assert "timed out" in res["msg"].lower()
    assert 1 <= res["elapsed"] < 10


def test_ms_new_client_prefers_legacy_layout_offline(tmp_path):
    """modelscope 1.38+ reads the pre-1.38 layout {cache}/models/{owner}/{name with . -> ___}
    (any non-empty dir) before its own snapshots/ layout. Old SDKs (<=1.37) need .msc there."""
    cache = tmp_path / "ms"
    legacy = cache / "models" / "owner" / "Qwen2___5-0___5B"
    for name, data in MS_FILES.items():
        (legacy / name).parent.mkdir(parents=True, exist_ok=True)
        (legacy / name).write_bytes(data)
    with open(legacy / ".msc", "wb") as f:
        pickle.dump([{"Path": p, "Revision": "0" * 40} for p in MS_FILES], f)
    res = ok(
        run_client(
            f"""
        from modelscope import snapshot_download
        result = snapshot_download({MS_REPO!r}, local_files_only=True)
    """,
            ms_env(tmp_path, None),
        )
    )
    assert Path(res) == legacy
