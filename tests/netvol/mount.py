"""Build and mount the simulated network volume (tests/netvol/netvolfs.c) in a subprocess, read its counters, always unmount."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("netvolfs.c")


def unavailable_reason() -> str | None:
    """Why the simulated volume cannot be built and mounted here, or None when it can."""
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing (no FUSE in this kernel or container)"
    if os.geteuid() != 0:
        return "mounting the simulated volume needs root"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing: apt-get install fuse3"
    if shutil.which("cc") is None:
        return "no C compiler (cc) to build tests/netvol/netvolfs.c: apt-get install gcc"
    if shutil.which("pkg-config") is None:
        return "pkg-config is missing (it finds libfuse3's headers): apt-get install pkg-config"
    if _fuse3_flags() is None:
        return "libfuse3's headers are missing (pkg-config knows no fuse3): apt-get install libfuse3-dev"
    return None


def _fuse3_flags() -> list[str] | None:
    done = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True, check=False)
    return done.stdout.split() if done.returncode == 0 else None


# Read once at import: tests/conftest.py points XDG_CACHE_HOME at a fresh folder for every test,
# which would rebuild the server for every test that mounts it.
BUILD_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "volume-cli-tests" / "netvol"


def server_binary(cache: Path = BUILD_CACHE) -> Path:
    """The compiled server, built on first use into ``cache/<sha256 of the source>/netvolfs``."""
    binary = cache / hashlib.sha256(SOURCE.read_bytes()).hexdigest() / "netvolfs"
    if binary.exists():
        return binary
    flags = _fuse3_flags()
    if flags is None:
        raise RuntimeError(unavailable_reason() or "pkg-config --cflags --libs fuse3 failed")
    binary.parent.mkdir(parents=True, exist_ok=True)
    # Concurrent builds (pytest-xdist workers) each write their own temp file; os.replace makes one win whole.
    fd, temp = tempfile.mkstemp(prefix=".netvolfs-", dir=binary.parent)
    os.close(fd)
    try:
        command = ["cc", "-O2", "-Wall", "-Wextra", "-o", temp, str(SOURCE), *flags]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"building {SOURCE.name} failed:\n{done.stderr}")
        os.replace(temp, binary)
    finally:
        Path(temp).unlink(missing_ok=True)
    return binary


@dataclass(frozen=True)
class Counts:
    """Operations by kind (``getattr`` includes the kernel's lookups: libfuse's high-level API merges them)."""

    by_kind: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def __getitem__(self, kind: str) -> int:
        return self.by_kind.get(kind, 0)

    def __str__(self) -> str:
        return f"{self.total} ops " + json.dumps(dict(sorted(self.by_kind.items())))


class NetVol:
    """A mounted simulated volume: ``path`` to work in, ``backing`` where the bytes land."""

    def __init__(self, path: Path, backing: Path, control: Path) -> None:
        self.path = path
        self.backing = backing
        self._control = control

    def _ask(self, op: str) -> dict[str, int]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(30)
            client.connect(str(self._control))
            with client.makefile("rw") as stream:
                stream.write(json.dumps({"op": op}) + "\n")
                stream.flush()
                return dict(Counter(json.loads(stream.readline())))

    def counts(self) -> Counts:
        """Operations since the last reset, once the file system is quiet (close's RELEASE arrives late)."""
        return Counts(self._ask("counts"))

    def reset(self) -> Counts:
        """Wait until quiet, zero the counters and the peak, and return the counts they held."""
        return Counts(self._ask("reset"))

    def peak(self) -> int:
        """The most operations in flight at once since the last reset."""
        return self._ask("peak")["peak"]


def _wait_mounted(mountpoint: Path, process: subprocess.Popen[bytes], control: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the simulated volume exited with {process.returncode} before mounting")
        if os.path.ismount(mountpoint) and control.exists():
            return
        time.sleep(0.02)
    raise RuntimeError(f"the simulated volume did not mount at {mountpoint} within 20 s")


def unmount(mountpoint: Path) -> bool:
    """Unmount; lazily when something still holds the mount, so a failed test never leaves it busy.

    Returns whether the unmount had to be lazy (the file system process then lives on).
    """
    if not os.path.ismount(mountpoint):
        return False
    done = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, check=False)
    if done.returncode == 0:
        return False
    subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True, check=False)
    return True


@contextmanager
def mounted(
    backing: Path,
    mountpoint: Path,
    *,
    latency_ms: float = 1.0,
    cache_seconds: float = 1.0,
    max_threads: int = 64,
    keep_cache: bool = False,
) -> Iterator[NetVol]:
    """Mount ``backing`` at ``mountpoint`` through the simulated volume for the duration of the block.

    ``keep_cache``: a file's page cache survives its next open, as with mfsmount's default cache mode;
    by default each open drops it (libfuse's default), so every process reads a file's bytes anew.
    """
    backing.mkdir(parents=True, exist_ok=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    # A unix socket path is limited to 108 bytes, which a pytest tmp_path can exceed.
    control = Path(f"/tmp/netvol-{os.getpid()}-{time.monotonic_ns()}.sock")
    command = [str(server_binary()), str(backing), str(mountpoint), "--control", str(control)]
    command += ["--latency-ms", str(latency_ms), "--cache-seconds", str(cache_seconds)]
    command += ["--max-threads", str(max_threads), *(["--keep-cache"] if keep_cache else [])]
    process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL)
    try:
        _wait_mounted(mountpoint, process, control)
        yield NetVol(mountpoint, backing, control)
    finally:
        lazy = unmount(mountpoint)
        try:
            # After a lazy unmount the process serves the open files until they close: do not wait long.
            process.wait(timeout=1 if lazy else 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        control.unlink(missing_ok=True)
