"""The simulated network volume's server (tests/netvol/netvolfs.c): what it counts, its latency, its control socket, its build.

With the kernel cache off (cache 0) the counts depend only on the calls made, so each step's
counts are exact; they are the counts the former Python server (mfusepy) gave for the same steps.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.netvol import mount
from tests.netvol.mount import NetVol, mounted, server_binary, unavailable_reason
from volume_cli.fileops import exchange_paths

LATENCY_MS = 50.0


def _need_fuse() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"simulated network volume unavailable: {reason}")


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetVol]:
    """No latency and no kernel cache: every call reaches the server and counts are exact."""
    _need_fuse()
    work = tmp_path_factory.mktemp("netvol-server")
    with mounted(work / "backing", work / "mnt", latency_ms=0, cache_seconds=0) as netvol:
        yield netvol


@pytest.fixture(scope="module")
def slow_volume(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetVol]:
    _need_fuse()
    work = tmp_path_factory.mktemp("netvol-slow")
    with mounted(work / "backing", work / "mnt", latency_ms=LATENCY_MS, cache_seconds=0) as netvol:
        yield netvol


def _seeded(volume: NetVol, name: str) -> Path:
    """A fresh folder on the volume: a file ``seed`` (3 bytes), ``dir/a``, an ``empty`` folder, a link ``alink -> seed``."""
    (volume.backing / name / "dir").mkdir(parents=True)
    (volume.backing / name / "empty").mkdir()
    (volume.backing / name / "seed").write_bytes(b"abc")
    (volume.backing / name / "dir" / "a").write_bytes(b"")
    os.symlink("seed", volume.backing / name / "alink")
    return volume.path / name


def _create_write_fsync_close(folder: Path) -> None:
    fd = os.open(folder / "new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"hello")
    os.fsync(fd)
    os.close(fd)


def _open_read_close(folder: Path) -> None:
    fd = os.open(folder / "seed", os.O_RDONLY)
    assert os.read(fd, 100) == b"abc"
    os.close(fd)


# (step, action on a seeded folder, expected counts): lookups reach the server as getattr (libfuse's
# high-level API); close() sends FLUSH, then RELEASE.
STEPS: list[tuple[str, Callable[[Path], object], dict[str, int]]] = [
    ("stat", lambda d: os.stat(d / "seed"), {"getattr": 3}),
    ("stat a missing name", lambda d: os.path.lexists(d / "nope"), {"getattr": 2}),
    ("readlink", lambda d: os.readlink(d / "alink"), {"getattr": 2, "readlink": 1}),
    ("mkdir", lambda d: os.mkdir(d / "d2"), {"getattr": 3, "mkdir": 1}),
    (
        "create write fsync close",
        _create_write_fsync_close,
        {"create": 1, "flush": 1, "fsync": 1, "getattr": 3, "release": 1, "write": 1},
    ),
    ("open read close", _open_read_close, {"flush": 1, "getattr": 3, "open": 1, "read": 1, "release": 1}),
    ("symlink", lambda d: os.symlink("seed", d / "l2"), {"getattr": 3, "symlink": 1}),
    ("link", lambda d: os.link(d / "seed", d / "h2"), {"getattr": 5, "link": 1}),
    ("chmod", lambda d: os.chmod(d / "seed", 0o600), {"chmod": 1, "getattr": 3}),
    ("chown", lambda d: os.chown(d / "seed", 0, 0), {"chown": 1, "getattr": 4}),
    ("truncate", lambda d: os.truncate(d / "seed", 1), {"getattr": 3, "truncate": 1}),
    (
        "utime of a link",
        lambda d: os.utime(d / "alink", ns=(1, 2), follow_symlinks=False),
        {"getattr": 3, "utimens": 1},
    ),
    ("access", lambda d: os.access(d / "seed", os.R_OK), {"access": 1, "getattr": 2}),
    ("listdir", lambda d: os.listdir(d / "dir"), {"getattr": 3, "readdir": 1}),
    ("statvfs", lambda d: os.statvfs(d), {"getattr": 1, "statfs": 1}),
    ("unlink", lambda d: os.unlink(d / "dir" / "a"), {"getattr": 3, "unlink": 1}),
    ("rmdir", lambda d: os.rmdir(d / "empty"), {"getattr": 2, "rmdir": 1}),
    ("rename", lambda d: os.rename(d / "seed", d / "moved"), {"getattr": 4, "rename": 1}),
]


@pytest.mark.parametrize(
    ("step", "expected"), [(name, expected) for name, _, expected in STEPS], ids=[s[0] for s in STEPS]
)
def test_the_server_counts_each_kind(volume: NetVol, step: str, expected: dict[str, int]) -> None:
    folder = _seeded(volume, step.replace(" ", "-"))
    action = next(action for name, action, _ in STEPS if name == step)
    volume.reset()
    action(folder)
    assert volume.counts().by_kind == expected


def test_the_passthrough_keeps_the_semantics(volume: NetVol) -> None:
    folder = _seeded(volume, "semantics")
    assert sorted(os.listdir(folder)) == ["alink", "dir", "empty", "seed"]
    assert os.readlink(folder / "alink") == "seed"
    assert not os.access(folder / "missing", os.F_OK)  # every failed access is EACCES, as os.access(...) said
    with pytest.raises(FileNotFoundError):
        os.stat(folder / "missing")
    os.utime(folder / "alink", ns=(10**9, 2 * 10**9), follow_symlinks=False)  # the link's times, not its target's
    assert os.lstat(volume.backing / "semantics" / "alink").st_mtime_ns == 2 * 10**9
    assert os.stat(volume.backing / "semantics" / "seed").st_mtime_ns != 2 * 10**9
    os.utime(folder / "seed")  # "now" reaches the backing file as now
    assert abs(os.stat(volume.backing / "semantics" / "seed").st_mtime - time.time()) < 60
    with open(folder / "seed", "r+b") as stream:
        stream.truncate(1)  # through the open file handle
        assert os.fstat(stream.fileno()).st_size == 1


def test_rename_keeps_its_flags(volume: NetVol) -> None:
    folder = _seeded(volume, "exchange")
    (folder / "other").mkdir()
    (folder / "other" / "b").write_bytes(b"")
    volume.reset()
    assert exchange_paths(folder / "dir", folder / "other")  # renameat2(RENAME_EXCHANGE): both full folders swap
    assert volume.counts()["rename"] == 1
    assert sorted(os.listdir(volume.backing / "exchange" / "dir")) == ["b"]
    assert sorted(os.listdir(volume.backing / "exchange" / "other")) == ["a"]
    renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    no_replace = 1  # RENAME_NOREPLACE
    assert renameat2(-100, os.fsencode(folder / "seed"), -100, os.fsencode(folder / "alink"), no_replace) == -1
    assert ctypes.get_errno() == errno.EEXIST
    assert os.readlink(volume.backing / "exchange" / "alink") == "seed"  # not replaced


def test_reset_returns_the_counts_and_zeroes_them_and_the_peak(volume: NetVol) -> None:
    folder = _seeded(volume, "reset")
    volume.reset()
    os.stat(folder / "seed")
    assert volume.reset().by_kind == {"getattr": 3}
    assert volume.counts().by_kind == {}
    assert volume.peak() == 0


def test_the_control_socket_answers_each_line_and_takes_a_quiet_period(volume: NetVol) -> None:
    volume.reset()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(30)
        client.connect(str(volume._control))
        with client.makefile("rw") as stream:

            def ask(request: dict[str, object]) -> object:
                stream.write(json.dumps(request) + "\n")
                stream.flush()
                return json.loads(stream.readline())

            assert ask({"op": "counts"}) == {}
            started = time.monotonic()
            os.stat(volume.path)
            assert ask({"op": "peak", "quiet": 0.2}) == {"peak": 1}
            assert time.monotonic() - started >= 0.2  # idle for 0.2 s after the last operation; a lower bound only
            assert ask({"op": "reset", "quiet": 0}) == {"getattr": 1}
            assert ask({"op": "counts"}) == {}


def test_an_operation_takes_at_least_the_latency(slow_volume: NetVol) -> None:
    folder = _seeded(slow_volume, "latency")
    slow_volume.reset()
    started = time.monotonic()
    os.stat(folder / "seed")
    assert time.monotonic() - started >= 3 * LATENCY_MS / 1000  # three lookups, one after the other
    assert slow_volume.counts().by_kind == {"getattr": 3}


def test_concurrent_callers_overlap(slow_volume: NetVol) -> None:
    folders = [_seeded(slow_volume, f"peak{n}") for n in range(8)]  # one folder each: the kernel serialises a folder
    slow_volume.reset()
    with ThreadPoolExecutor(len(folders)) as pool:
        list(pool.map(lambda folder: os.stat(folder / "seed"), folders))
    assert slow_volume.peak() > 1
    assert slow_volume.reset()["getattr"] == 3 * len(folders)


def test_counts_wait_for_the_release_that_arrives_after_close(slow_volume: NetVol) -> None:
    folder = _seeded(slow_volume, "release")
    fd = os.open(folder / "seed", os.O_RDONLY)
    slow_volume.reset()
    os.close(fd)  # returns after FLUSH; the kernel sends RELEASE afterwards, and it takes LATENCY_MS
    assert slow_volume.counts().by_kind == {"flush": 1, "release": 1}


def test_two_builds_at_once_leave_one_whole_binary(tmp_path: Path) -> None:
    if mount.shutil.which("cc") is None or mount._fuse3_flags() is None:
        pytest.skip("no C compiler or no libfuse3 headers")
    barrier = threading.Barrier(2)

    def build() -> Path:
        barrier.wait()
        return server_binary(tmp_path)

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: build(), range(2))
    assert first == second and os.access(first, os.X_OK)
    assert [path.name for path in first.parent.iterdir()] == ["netvolfs"]  # no temp file left behind
    assert first.parent.name == mount.hashlib.sha256(mount.SOURCE.read_bytes()).hexdigest()
    assert server_binary(tmp_path) == first  # built once: the second call finds it


def test_the_skip_reason_names_the_missing_build_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mount.Path, "exists", lambda self: True)
    monkeypatch.setattr(mount.os, "geteuid", lambda: 0)
    for missing, said in (("cc", "C compiler"), ("pkg-config", "pkg-config")):
        monkeypatch.setattr(mount.shutil, "which", lambda name, missing=missing: None if name == missing else name)
        assert said in (unavailable_reason() or "")
    monkeypatch.setattr(mount.shutil, "which", lambda name: name)
    monkeypatch.setattr(mount, "_fuse3_flags", lambda: None)
    assert "libfuse3-dev" in (unavailable_reason() or "")
    monkeypatch.setattr(mount, "_fuse3_flags", lambda: ["-lfuse3"])
    assert unavailable_reason() is None


@pytest.mark.parametrize(("keep_cache", "reads"), [(False, 2), (True, 1)])
def test_keep_cache_lets_a_file_s_page_cache_outlive_its_next_open(
    tmp_path: Path, keep_cache: bool, reads: int
) -> None:
    """As mfsmount's default cache mode, ``--keep-cache`` serves a second open's read from memory."""
    _need_fuse()
    with mounted(tmp_path / "backing", tmp_path / "mnt", latency_ms=0, cache_seconds=0, keep_cache=keep_cache) as vol:
        (vol.path / "seed").write_bytes(b"abc")
        vol.reset()
        for _ in range(2):  # two processes' worth of opens, one after the other
            _open_read_close(vol.path)
        assert vol.reset()["read"] == reads
