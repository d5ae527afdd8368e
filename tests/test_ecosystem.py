"""Fitting in: the environment variables people already set, transformers' cache marker, honest dependencies."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import CliResult
from wheelfactory import IndexServer, build_wheel

from volume_cli.deps.uvtool import default_cache_dir, ignored_index_warnings

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_uv_cache_dir_is_honoured(tmp_path: Path) -> None:
    warm = tmp_path / "warm-uv-cache"
    assert default_cache_dir({"UV_CACHE_DIR": str(warm), "HOME": str(tmp_path)}) == warm
    ours = tmp_path / "ours"
    assert default_cache_dir({"UV_CACHE_DIR": str(warm), "VOLUME_CLI_UV_CACHE": str(ours)}) == ours
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "volume-cli" / "uv"


def test_ignored_index_variables_are_named_never_shown() -> None:
    secret = "https://user:s3cret@example.invalid/simple"
    warnings = ignored_index_warnings({"UV_INDEX_URL": secret, "PIP_INDEX_URL": secret, "UV_DEFAULT_INDEX": ""})
    assert [warning.split()[0] for warning in warnings] == ["UV_INDEX_URL", "PIP_INDEX_URL"]
    assert all("s3cret" not in warning and "VOLUME_CLI_INDEX_URL" in warning for warning in warnings)


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[tuple[list[str], Path]]:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "alpha", "1.0")
    projects, root = tmp_path / "projects", tmp_path / "volume"
    (projects / "tiny").mkdir(parents=True)
    root.mkdir()
    (projects / "tiny" / "project.yaml").write_text(f'name: tiny\npython_version: "{PY}"\n')
    (projects / "tiny" / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [alpha==1.0]\n")
    with IndexServer(wheels) as server:
        yield ["--root", str(root), "--projects-dir", str(projects), "--index-url", server.url], root


def test_install_warns_once_about_an_ignored_index_and_writes_the_hub_marker(
    tiny: tuple[list[str], Path], cli: object
) -> None:
    args, root = tiny
    result: CliResult = cli(  # type: ignore[operator]
        "deps", "install", "--project", "tiny", *args, env={"UV_INDEX_URL": "http://127.0.0.1:9/simple"}
    )
    assert result.exit_code == 0, result
    assert (result.stdout + result.stderr).count("UV_INDEX_URL is set but ignored") == 1
    assert (root / "models" / "huggingface" / "hub" / "version.txt").read_text() == "1"
