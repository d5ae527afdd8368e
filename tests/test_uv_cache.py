"""The uv cache on the pod's own disk: ``status`` names it, ``status --uv-cache`` sizes it, ``gc --uv-cache`` empties it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _fill(cache: Path) -> int:
    (cache / "wheels-v5" / "pypi").mkdir(parents=True)
    payload = cache / "wheels-v5" / "pypi" / "big.whl"
    payload.write_bytes(b"x" * 300_000)
    os.link(payload, cache / "wheels-v5" / "linked.whl")  # a hard link is not counted twice
    return 300_000


def test_status_names_the_uv_cache_and_sizes_it_only_on_request(cli: Any, volume_root: Path) -> None:
    cache = Path(os.environ["VOLUME_CLI_UV_CACHE"])
    size = _fill(cache)
    plain = cli("status", "--root", str(volume_root), "--json")
    assert plain.exit_code == 0, plain.stderr
    report = json.loads(plain.stdout)
    assert report["uv_cache"]["path"] == str(cache)
    assert report["uv_cache"]["size_bytes"] is None  # a walk of 6 GB is not done on every status
    measured = cli("status", "--root", str(volume_root), "--uv-cache", "--json")
    assert measured.exit_code == 0, measured.stderr
    usage = json.loads(measured.stdout)["uv_cache"]
    assert size <= usage["size_bytes"] < 2 * size
    human = cli("status", "--root", str(volume_root), "--uv-cache")
    assert "uv cache" in human.stdout and str(cache) in human.stdout


def test_gc_uv_cache_runs_uv_cache_clean(cli: Any, volume_root: Path) -> None:
    cache = Path(os.environ["VOLUME_CLI_UV_CACHE"])
    size = _fill(cache)
    dry = cli("gc", "--root", str(volume_root), "--uv-cache", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout)["uv_cache"]["bytes_freed"] >= size
    assert (cache / "wheels-v5" / "pypi" / "big.whl").exists()
    done = cli("gc", "--root", str(volume_root), "--uv-cache")
    assert done.exit_code == 0, done.stderr
    assert "uv cache" in done.stdout
    assert not (cache / "wheels-v5" / "pypi" / "big.whl").exists()
