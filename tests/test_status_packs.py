"""``status`` shows what the packs cost beside the store (one listing of python-deps/.packs: sizes from names)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.test_status_truth import _install, _project, index  # noqa: F401 (fixture)
from tests.wheelfactory import IndexServer
from volume_cli import local_copy
from volume_cli.deps.publish import write_packs
from volume_cli.layout import VolumeLayout


def _status(cli: Any, layout: VolumeLayout, tmp_path: Path, index: IndexServer, *extra: str) -> str:  # noqa: F811
    result = cli(
        "status",
        "--root",
        str(layout.root),
        "--projects-dir",
        str(tmp_path / "projects"),
        "--index-url",
        index.url,
        *extra,
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    return str(result.stdout)


def test_status_reports_the_packs_size_next_to_the_store(
    layout: VolumeLayout,
    index: IndexServer,  # noqa: F811
    tmp_path: Path,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # only this test's projects are discovered
    _install(layout, _project(tmp_path, ["alpha==1.0"]), index)
    before = json.loads(_status(cli, layout, tmp_path, index, "--json"))["store"]
    assert (before["packs"], before["packs_bytes"]) == (0, 0)
    assert "packs" not in next(line for line in _status(cli, layout, tmp_path, index).splitlines() if "store" in line)

    packs = layout.deps_dir / local_copy.PACKS
    write_packs({path.name: path for path in layout.store_dir.iterdir()}, packs, threads=1)
    (packs / f"{local_copy.TEMP_PREFIX}alpha-1.0-dead").write_bytes(b"x" * 1000)  # a killed writer's: not a pack
    written = [name for name in os.listdir(packs) if local_copy.parse_pack_name(name) is not None]
    size = sum((packs / name).stat().st_size for name in written)
    store = json.loads(_status(cli, layout, tmp_path, index, "--json"))["store"]
    assert (store["packs"], store["packs_bytes"]) == (len(written), size) and size > 0
    line = next(line for line in _status(cli, layout, tmp_path, index).splitlines() if "store" in line)
    assert f"({len(written)} entries)" in line and "packs" in line, line
