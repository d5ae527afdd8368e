"""The simulated network volume: a passthrough FUSE file system that sleeps in every operation.

Run as ``python -m tests.netvol.fs BACKING MOUNTPOINT --control SOCKET``; it stays in the
foreground until unmounted. Every operation sleeps ``--latency-ms`` (a network round trip)
and is counted by kind. The kernel caches attributes and entries for ``--cache-seconds``
(MooseFS' mfsmount default is 1 s); 0 turns the kernel cache off, which makes counts
depend only on the calls a program makes.

libfuse's high-level API has no separate LOOKUP callback: a kernel lookup reaches this file
system as a ``getattr`` on the path, so ``getattr`` counts both.

The control socket answers one JSON line per request: ``{"op": "counts"}`` waits until the
file system is quiet (the kernel sends RELEASE after ``close`` has returned) and returns
the counts; ``{"op": "reset"}`` does the same and zeroes them (and the peak);
``{"op": "peak"}`` returns ``{"peak": N}``, the most operations that were in flight at once.
"""

from __future__ import annotations

import argparse
import errno
import functools
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import mfusepy

_Method = TypeVar("_Method", bound=Callable[..., Any])


def counted(method: _Method) -> _Method:
    """Count the call under the method's name and pay the round trip before doing it."""

    @functools.wraps(method)  # mfusepy reads create()'s signature through __wrapped__
    def wrapper(self: Passthrough, *args: Any) -> Any:
        self.tally.begin(method.__name__)
        try:
            if self.latency:
                time.sleep(self.latency)
            return method(self, *args)
        finally:
            self.tally.end()

    return wrapper  # type: ignore[return-value]


_STAT_KEYS = (
    "st_mode",
    "st_ino",
    "st_dev",
    "st_nlink",
    "st_uid",
    "st_gid",
    "st_size",
    "st_atime",
    "st_mtime",
    "st_ctime",
    "st_blocks",
    "st_blksize",
)


class Tally:
    """Operation counts plus what it takes to know that no operation is still on its way."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self.peak = 0  # most operations in flight at once: proves calls overlap
        self.last_end = time.monotonic()

    def begin(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    def end(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.last_end = time.monotonic()

    def settle(self, quiet: float, *, reset: bool) -> dict[str, int]:
        """Counts once nothing has run for ``quiet`` seconds (bounded, so a busy caller still gets an answer)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self._lock:
                if self.in_flight == 0 and time.monotonic() - self.last_end >= quiet:
                    break
            time.sleep(quiet / 4)
        with self._lock:
            snapshot = dict(self.counts)
            if reset:
                self.counts.clear()
                self.peak = 0
        return snapshot


class Passthrough(mfusepy.Operations):  # type: ignore[misc]
    """Every call goes to the backing folder after ``latency`` seconds; each call is counted."""

    use_ns = True

    def __init__(self, backing: Path, *, latency: float, tally: Tally) -> None:
        self.backing = str(backing)
        self.latency = latency
        self.tally = tally

    def _real(self, path: str) -> str:
        return self.backing + path

    @counted
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._real(path))
        attrs = {key: getattr(st, key) for key in _STAT_KEYS}
        for key in ("st_atime", "st_mtime", "st_ctime"):
            attrs[key] = getattr(st, key + "_ns")
        return attrs

    @counted
    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))

    @counted
    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    @counted
    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    @counted
    def unlink(self, path: str) -> int:
        os.unlink(self._real(path))
        return 0

    @counted
    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._real(target))
        return 0

    @counted
    def link(self, target: str, source: str) -> int:
        os.link(self._real(source), self._real(target))
        return 0

    @counted
    def rename(self, old: str, new: str) -> int:
        os.rename(self._real(old), self._real(new))
        return 0

    @counted
    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    @counted
    def chown(self, path: str, uid: int, gid: int) -> int:
        os.lchown(self._real(path), uid, gid)
        return 0

    @counted
    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._real(path), length)
        return 0

    @counted
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._real(path), ns=times, follow_symlinks=False)
        return 0

    @counted
    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode, follow_symlinks=False):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    @counted
    def open(self, path: str, flags: int) -> int:
        return os.open(self._real(path), flags)

    @counted
    def create(self, path: str, mode: int, flags: int = os.O_WRONLY | os.O_TRUNC) -> int:
        return os.open(self._real(path), flags | os.O_CREAT, mode)

    @counted
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    @counted
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    @counted
    def flush(self, path: str, fh: int) -> int:
        return 0

    @counted
    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    @counted
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0

    @counted
    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    @counted
    def statfs(self, path: str) -> dict[str, int]:
        stv = os.statvfs(self._real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize")
        return {key: getattr(stv, key) for key in keys} | {"f_namemax": stv.f_namemax}


def serve_control(path: Path, tally: Tally, *, quiet: float) -> None:
    """Answer counts/reset requests on a unix socket, one JSON line each, until the process ends."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)

    def loop() -> None:
        while True:
            connection, _ = server.accept()
            with connection, connection.makefile("rw") as stream:
                for line in stream:
                    request = json.loads(line)
                    op = request.get("op")
                    counts = tally.settle(float(request.get("quiet", quiet)), reset=op == "reset")
                    stream.write(json.dumps({"peak": tally.peak} if op == "peak" else counts) + "\n")
                    stream.flush()

    threading.Thread(target=loop, name="netvol-control", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("backing", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--control", type=Path, required=True, help="unix socket for counts/reset")
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--cache-seconds", type=float, default=1.0)
    parser.add_argument("--max-threads", type=int, default=64, help="libfuse worker threads (libfuse default: 10)")
    parser.add_argument(
        "--quiet-ms", type=float, default=30.0, help="how long the FS must be idle before counts are read"
    )
    args = parser.parse_args(argv)
    tally = Tally()
    serve_control(args.control, tally, quiet=args.quiet_ms / 1000)
    operations = Passthrough(args.backing.resolve(), latency=args.latency_ms / 1000, tally=tally)
    cache = f"{args.cache_seconds:g}"
    mfusepy.FUSE(
        operations,
        str(args.mountpoint),
        foreground=True,
        fsname="netvol",
        max_threads=args.max_threads,
        # libfuse 3.14 warns about its own unset default otherwise
        max_idle_threads=args.max_threads,
        entry_timeout=cache,
        attr_timeout=cache,
        negative_timeout=cache,
    )


if __name__ == "__main__":
    main()
