"""Error lines that name the real cause: index URLs, refused tokens, missing or broken config, uv's noise."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakehub import FakeHub
from tests.helpers import CliResult, ProjectsFolder
from tests.wheelfactory import build_wheel, serve
from volume_cli import models
from volume_cli.errors import ConfigError, DownloadError
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest
from volume_cli.project.discovery import load_project_folder

Cli = Callable[..., CliResult]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
FAST = {"timeout": 3.0, "retries": 0, "backoff": 0.01}


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("pypi.tuna.tsinghua.edu.cn", "did you mean https://pypi.tuna.tsinghua.edu.cn/simple?"),
        ("pypi.tuna.tsinghua.edu.cn/simple", "did you mean https://pypi.tuna.tsinghua.edu.cn/simple?"),
        ("https:///simple", "has no host"),
        ("http://", "must start with"),
        ("ftp://mirror/simple", "must start with"),
    ],
)
def test_a_bad_index_url_option_is_a_usage_error_naming_the_url(
    url: str, words: str, cli: Cli, projects_folder: ProjectsFolder, volume_root: Path
) -> None:
    projects_folder.add_yaml_project("demo")

    result = cli("deps", "list", "-p", "demo", "--projects-dir", str(projects_folder.path), "--index-url", url)

    assert result.exit_code == 2, result
    assert words in result.stderr and "--index-url" in result.stderr


def test_a_bare_mirror_host_warns_but_other_index_paths_do_not() -> None:
    from volume_cli.config.dependencies import check_index_url, index_url_warning

    assert "did you mean https://pypi.tuna.tsinghua.edu.cn/simple?" in (
        index_url_warning("https://pypi.tuna.tsinghua.edu.cn") or ""
    )
    for fine in ("https://download.pytorch.org/whl/cu121", "https://mirror.example/simple", "file:///srv/wheels"):
        assert index_url_warning(check_index_url(fine)) is None


def test_a_bare_mirror_host_is_named_when_uv_blames_the_package(
    cli: Cli, projects_folder: ProjectsFolder, volume_root: Path, tmp_path: Path
) -> None:
    build_wheel(tmp_path / "wheels", "six", "1.17.0")
    projects_folder.add_yaml_project("demo", python=PY)
    with serve(tmp_path / "wheels") as index:
        bare = index.url.removesuffix("/simple")
        result = cli(
            "deps", "install", "-p", "demo", "--projects-dir", str(projects_folder.path), "--root", str(volume_root),
            "--index-url", bare,
        )  # fmt: skip

    assert result.exit_code == 1, result
    assert f"warning: index URL {bare} has no path" in result.stderr
    assert f"the index URL {bare} (PyPI-style indexes end in /simple)" in result.stderr
    assert "Using CPython" not in result.stderr and "Resolved" not in result.stderr


def test_uv_status_lines_are_dropped_from_the_excerpt() -> None:
    from volume_cli.deps.uvtool import error_excerpt

    output = (
        "Using CPython 3.11.9 interpreter at: /usr/bin/python3.11\n"
        "  × No solution found when resolving dependencies:\n"
        "  ╰─▶ Because nosuch was not found in the package registry and you require nosuch, we can conclude that\n"
        "      your requirements are unsatisfiable.\n"
        "Resolved 3 packages in 12ms\n"
        "⠙ Preparing packages... (0/1)\n"
    )

    excerpt = error_excerpt(output)

    assert "Using CPython" not in excerpt and "Resolved" not in excerpt and "Preparing" not in excerpt
    assert "No solution found" in excerpt and "unsatisfiable" in excerpt


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"HF_TOKEN": "hf_wrong_token_value"}, "the token was refused (wrong, or no access to this repo)"),
        ({}, "no token was found: set HF_TOKEN"),
    ],
)
@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_not_told_to_set_hf_token(
    status: int, env: dict[str, str], words: str, layout: VolumeLayout, tmp_path: Path
) -> None:
    folder = tmp_path / "projects" / "gated"
    folder.mkdir(parents=True)
    (folder / "project.yaml").write_text(
        'name: gated\npython_version: "3.11"\nmodels:\n  - {source: huggingface, repo_id: org/gated}\n'
    )
    with FakeHub() as hub:
        hub.add_hf_repo("org/gated", files={"config.json": b"{}"})
        hub.fail_next(100, status=status)
        with pytest.raises(DownloadError) as caught:
            models.download(
                layout=layout,
                project=load_project_folder(folder),
                hf_endpoints=[hub.url],
                env={**env, "HOME": str(tmp_path / "home")},
                **FAST,
            )

    assert words in (caught.value.hint or ""), caught.value.hint
    assert "hf_wrong_token_value" not in f"{caught.value} {caught.value.hint}"


def test_a_missing_dependencies_yaml_says_how_to_create_one(cli: Cli, projects_folder: ProjectsFolder) -> None:
    folder = projects_folder.add_yaml_project("demo")
    (folder / "dependencies.yaml").unlink()

    result = cli("deps", "list", "-p", "demo", "--projects-dir", str(projects_folder.path))

    assert result.exit_code == 1
    assert "dependencies.yaml: file not found" in result.stderr
    next_line = next(line for line in result.stderr.splitlines() if line.startswith("next:"))
    assert "groups:" in next_line and "packages:" in next_line and "projects new" in next_line


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("groups:\n  a:\n    packages: [six]\n  bad: [\n", 4, 8, "'[' opened here is never closed"),
        ('groups:\n  a:\n    packages: [six]\n  x: "a\n  b: 1\n', 4, 6, "quoted scalar opened here is never closed"),
        ('groups:\n  a:\n    packages: [six, "x[y"\n  b:\n    packages: []\n', 3, 15, "flow sequence opened here"),
        ("a: {b\n", 1, 4, "flow mapping opened here is never closed"),
        ("groups:\n  a:\n    packages: [six]\n  x: a: b\n", 4, 7, "mapping values are not allowed here"),
    ],
)
def test_bad_yaml_points_at_the_real_error(tmp_path: Path, text: str, line: int, column: int, words: str) -> None:
    from volume_cli.config.dependencies import load_dependency_config

    path = tmp_path / "dependencies.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_dependency_config(path)

    assert caught.value.problems[0].startswith(f"{path}:{line}: invalid YAML (column {column}): "), caught.value
    assert words in caught.value.problems[0]


def test_models_verify_without_a_project_names_the_damaged_models_projects(
    cli: Cli, layout: VolumeLayout, tmp_path: Path
) -> None:
    projects = tmp_path / "projects"
    folder = projects / "weights"
    folder.mkdir(parents=True)
    (folder / "w.bin").write_bytes(b"weights")
    (folder / "project.yaml").write_text(
        'name: weights\npython_version: "3.11"\nmodels:\n  - {source: local, path: w.bin, dest: ck/w.bin}\n'
    )
    models.download(layout=layout, project=load_project_folder(folder))
    manifest = read_model_manifest(layout, "local/ck/w.bin")
    assert manifest is not None
    layout.absolute(manifest.target).write_bytes(b"damaged!!")

    result = cli("models", "verify", "--root", str(layout.root), "--projects-dir", str(projects))

    assert result.exit_code == 1
    assert "next: volume-cli models download --project weights" in result.stderr
    assert "NAME" not in result.stderr
    assert not re.search(r"--project NAME", result.stderr)
