"""A push with nothing new reads no file: the digests of files it already hashed are kept on this machine."""

from __future__ import annotations

import os
from pathlib import Path

from volume_cli.sync.digests import DigestCache
from volume_cli.sync.manifest import hash_now


def _sha(cache: DigestCache, root: Path, name: str) -> str:
    path = root / name
    return cache.sha256(str(path), name, path.lstat())


def test_an_unchanged_file_is_not_read_again_and_a_rewritten_one_is(tmp_path: Path) -> None:
    root, state = tmp_path / "volume", tmp_path / "state"
    root.mkdir()
    for name in ("a", "b", "c"):
        (root / name).write_bytes(name.encode() * 1000)
    first = DigestCache(state, root, "demo")
    digests = {name: _sha(first, root, name) for name in ("a", "b", "c")}
    assert first.hashed == 3 and digests["a"] == hash_now(str(root / "a"), "a", (root / "a").lstat())
    first.save()
    again = DigestCache(state, root, "demo")
    assert {name: _sha(again, root, name) for name in ("a", "b", "c")} == digests and again.hashed == 0
    # rewritten in place with the same size and mtime: ctime still moves, so it is read again
    before = (root / "b").stat()
    (root / "b").write_bytes(b"B" * 1000)
    os.utime(root / "b", ns=(before.st_atime_ns, before.st_mtime_ns))
    changed = DigestCache(state, root, "demo")
    assert _sha(changed, root, "b") != digests["b"] and changed.hashed == 1
    assert _sha(changed, root, "a") == digests["a"] and changed.hashed == 1
    changed.save()
    # what this manifest did not use (c) drops out; another root or project has its own file
    assert DigestCache(state, root, "demo")._known.keys() == {"a", "b"}
    assert DigestCache(state, root, "other")._known == {}
    assert list(state.iterdir()) and not list(root.glob("digests-*"))  # never on the volume


def test_an_unreadable_cache_only_costs_a_rehash(tmp_path: Path) -> None:
    root, state = tmp_path / "volume", tmp_path / "state"
    root.mkdir()
    (root / "a").write_bytes(b"a")
    cache = DigestCache(state, root, "demo")
    _sha(cache, root, "a")
    cache.save()
    cache.path.write_text("{torn")
    again = DigestCache(state, root, "demo")
    _sha(again, root, "a")
    assert again.hashed == 1
