"""Where one `volume-cli deps install` spends its time on the simulated network volume.

Run by hand as root, never in CI::

    .venv/bin/python bench/netvol_timeline.py [--set small|full] [--step "one leaf upgraded"] [--touch-memory-gb 4]

Installs the set's full requirements (and, for a later ``--step``, first untimed), then runs the
step once with its progress on stderr and prints every progress line with the seconds since the
start, the CPU of the simulated volume's server and of the whole machine every ``--sample``
seconds, and at the end the operations the volume served by kind. uv's cache is warmed first,
as in ``bench/netvol_bench.py``, and the step starts after a child wrote ``--touch-memory-gb`` of memory,
as there. The figures in docs/performance.md's phase profiles come from it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from freshdisk import DISKS  # noqa: E402
from netvol_bench import (  # noqa: E402
    UV,
    VOLUME_CLI,
    Bench,
    VolumeCounter,
    add_touch_memory_option,
    bench_env,
    local_disk,
    settle,
    warm_caches,
)
from wheelsets import FULL, SMALL, ensure_wheelhouse, small_wheelhouse  # noqa: E402

from tests.netvol.mount import mounted  # noqa: E402
from tests.wheelfactory import IndexServer  # noqa: E402

STEPS = ("full install", "no-op", "one leaf upgraded", "one package removed")


def process_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its waited-for children, 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def server_pids(mountpoint: Path) -> list[int]:
    pids = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            arguments = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arguments and arguments[0].endswith(b"netvolfs") and str(mountpoint).encode() in arguments:
            pids.append(int(name))
    return pids


def sample(started: float, servers: list[int], every: float, done: threading.Event) -> None:
    last = (time.monotonic(), sum(map(process_cpu, servers)), machine_busy())
    cores = os.cpu_count() or 1
    while not done.wait(every):
        now = (time.monotonic(), sum(map(process_cpu, servers)), machine_busy())
        seconds = now[0] - last[0]
        server = (now[1] - last[1]) / seconds
        busy = (now[2][0] - last[2][0]) / max(1, now[2][1] - last[2][1]) * cores
        print(f"  [{now[0] - started:6.1f} s] server {server:4.2f} cores, machine {busy:4.2f} cores", file=sys.stderr)
        last = now


def run_step(bench: Bench, target: Path, step: str, every: float) -> None:
    command = [part for part in bench.install_command(VOLUME_CLI, target, step) or [] if part != "-q"]
    counter = bench.counter
    assert isinstance(counter, VolumeCounter)
    servers = server_pids(counter.path)
    counter.volume.reset()
    cpu_before = sum(map(process_cpu, servers))
    started = time.monotonic()
    done = threading.Event()
    threading.Thread(target=sample, args=(started, servers, every, done), daemon=True).start()
    process = subprocess.Popen(command, env=bench.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        print(f"{time.monotonic() - started:6.2f} s  {line.rstrip()}", file=sys.stderr)
    process.wait()
    elapsed = time.monotonic() - started
    done.set()
    counts = counter.volume.reset()
    server_cpu = sum(map(process_cpu, servers)) - cpu_before
    print(f"{step}: exit {process.returncode}, {elapsed:.2f} s, server CPU {server_cpu:.1f} s, {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("small", "full"), default="full")
    parser.add_argument("--step", choices=STEPS, default="full install")
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between CPU samples")
    parser.add_argument("--disk", choices=DISKS, default="fresh", help="as bench/netvol_bench.py's --disk")
    add_touch_memory_option(parser)
    args = parser.parse_args()
    cache_root = Path.home() / ".cache" / "volume-cli-bench"
    if args.set == "small":
        wheels, wheelhouse = SMALL, small_wheelhouse(cache_root / "netvol-small")
    else:
        wheels, wheelhouse = FULL, ensure_wheelhouse(cache_root / "wheelhouse")
    where = Path(tempfile.mkdtemp(prefix="netvol-timeline-"))
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    try:
        with (
            local_disk(where, args.disk) as work,
            IndexServer(wheelhouse) as index,
            mounted(work / "backing", work / "mnt") as volume,
        ):
            bench = Bench(
                VolumeCounter(volume), work, wheels, index.url, uv, bench_env(work), 1.0, args.touch_memory_gb
            )
            warm_caches(bench, [UV, VOLUME_CLI])
            target = volume.path / "target"
            target.mkdir()
            for step in STEPS[: STEPS.index(args.step)]:
                subprocess.run(bench.install_command(VOLUME_CLI, target, step), env=bench.env, check=True)
            # As the benchmark does before each step: the steps before it leave writeback behind, the kernel's
            # caches expire (as before a user's next command), and memory is touched last, right before the step.
            settle(bench, expire_caches=True)
            run_step(bench, target, args.step, args.sample)
    finally:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
