"""Models engine benchmark (run by hand): ``python bench/models_bench.py [--files 8] [--mb 64]``.

1. Throughput on loopback: a repo of N files of M MB from the fake hub
   (in its own process, so it does not share our GIL), downloaded by the
   engine and by plain ``huggingface_hub.snapshot_download``, each in a
   fresh subprocess and a fresh cache; best of ``--rounds``. Goal: ratio >= 1.0
   (the engine also verifies the sha256 of every byte; the client does not).
2. The start-up no-op with 20 models present: time of ``download`` and the
   number of requests the hub saw. Goal: <= 0.5 s and 0 requests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

SERVER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    from tests.fakehub import FakeHub
    hub = FakeHub().start()
    block = os.urandom(1 << 20)
    files = {{f"model-{{i:05d}}-of-{n:05d}.safetensors": bytes([i]) + block * {mb} for i in range({n})}}
    hub.add_hf_repo("bench/big", files=files)
    print(hub.url, flush=True)
    sys.stdin.read()
    hub.stop()
    """
)

ENGINE = textwrap.dedent(
    """
    import json, sys, time, textwrap
    from pathlib import Path
    from volume_cli.layout import VolumeLayout
    from volume_cli.models import download
    from volume_cli.project.discovery import load_project_folder
    root, folder, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    project = load_project_folder(folder)
    started = time.perf_counter()
    result = download(layout=VolumeLayout(root), project=project, hf_endpoints=[url])
    print(json.dumps({"seconds": time.perf_counter() - started, "bytes": result.bytes_downloaded}))
    """
)

CLIENT = textwrap.dedent(
    """
    import json, os, sys, time
    from huggingface_hub import snapshot_download
    started = time.perf_counter()
    folder = snapshot_download("bench/big", cache_dir=sys.argv[1])
    size = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))
    print(json.dumps({"seconds": time.perf_counter() - started, "bytes": size}))
    """
)


def _run(script: str, args: list[str], env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def throughput(files: int, mb: int, rounds: int, scratch: Path) -> tuple[float, float, int]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(root=str(REPO_ROOT), n=files, mb=mb)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        project = scratch / "projects" / "bench"
        project.mkdir(parents=True)
        (project / "project.yaml").write_text(
            'name: bench\npython_version: "3.11"\nmodels:\n  - source: huggingface\n    repo_id: bench/big\n'
        )
        env = {**os.environ, "HF_ENDPOINT": url, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        best_engine = best_client = float("inf")
        size = 0
        for number in range(rounds):
            for name in ("engine", "client"):
                target = scratch / f"{name}-{number}"
                target.mkdir()
                if name == "engine":
                    report = _run(ENGINE, [str(target), str(project), url], env)
                    best_engine = min(best_engine, report["seconds"])
                else:
                    report = _run(CLIENT, [str(target / "hub")], env)
                    best_client = min(best_client, report["seconds"])
                size = int(report["bytes"])
                shutil.rmtree(target)
        return best_engine, best_client, size
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)


def no_op(models: int, scratch: Path) -> tuple[float, int]:
    from tests.fakehub import FakeHub
    from volume_cli.layout import VolumeLayout
    from volume_cli.models import download
    from volume_cli.project.discovery import load_project_folder

    root = scratch / "noop-volume"
    root.mkdir()
    folder = scratch / "projects" / "noop"
    folder.mkdir(parents=True)
    lines = ['name: noop\npython_version: "3.11"\nmodels:']
    with FakeHub() as hub:
        for index in range(models):
            hub.add_hf_repo(f"org/m{index}", files={"config.json": b"{}", "model.safetensors": bytes([index]) * 4096})
            lines.append(f"  - source: huggingface\n    repo_id: org/m{index}")
        (folder / "project.yaml").write_text("\n".join(lines) + "\n")
        project = load_project_folder(folder)
        layout = VolumeLayout(root)
        download(layout=layout, project=project, hf_endpoints=[hub.url])
        seen = len(hub.requests)
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            result = download(layout=layout, project=project, hf_endpoints=[hub.url])
            best = min(best, time.perf_counter() - started)
            assert all(model.action == "present" for model in result.models)
        return best, len(hub.requests) - seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", type=int, default=20)
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="volume-cli-bench-"))
    try:
        engine, client, size = throughput(options.files, options.mb, options.rounds, scratch)
        noop_seconds, noop_requests = no_op(options.models, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    mib = size / (1 << 20)
    rows = [
        ("measure", "value", "goal"),
        (f"engine download {options.files} x {options.mb} MB", f"{engine:.2f} s ({mib / engine:.0f} MiB/s)", ""),
        ("huggingface_hub snapshot_download", f"{client:.2f} s ({mib / client:.0f} MiB/s)", ""),
        ("throughput ratio engine / client", f"{client / engine:.2f}", ">= 1.0"),
        (f"no-op with {options.models} models present", f"{noop_seconds * 1000:.0f} ms", "<= 500 ms"),
        ("requests during the no-op", str(noop_requests), "0"),
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


if __name__ == "__main__":
    main()
