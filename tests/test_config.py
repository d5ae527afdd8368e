"""dependencies.yaml and project.yaml: every bad input gets one located line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from volume_cli.config.dependencies import load_dependency_config
from volume_cli.errors import ConfigError
from volume_cli.project.discovery import load_project_folder


def write(tmp_path: Path, text: str, name: str = "dependencies.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path, **kwargs: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_dependency_config(path, **kwargs)
    return info.value.problems


GOOD = """\
groups:
  pytorch:
    index_url: https://download.pytorch.org/whl/cu121
    packages:
      - torch==2.4.1
  standard:
    packages:
      - Scikit_Learn[extra]>=1.1 ; python_version >= "3.8"
      - pyyaml
  funasr:
    no_deps: true
    packages: [funasr==0.8.8]
install_order: [pytorch, standard, funasr]
metadata:
  python_version: "3.10"
"""


def test_valid_config_loads_with_order_and_indexes(tmp_path: Path) -> None:
    config = load_dependency_config(write(tmp_path, GOOD), plugin_python_version="3.10")
    assert [name for name, _ in config.ordered_groups] == ["pytorch", "standard", "funasr"]
    assert (
        config.groups["pytorch"].effective_index_url("https://mirror/simple")
        == "https://download.pytorch.org/whl/cu121"
    )
    assert config.groups["standard"].effective_index_url("https://mirror/simple") == "https://mirror/simple"
    assert config.groups["standard"].effective_index_url(None) == "https://pypi.org/simple"
    assert config.groups["funasr"].no_deps is True
    assert config.package_count == 4


def test_hash_ignores_formatting_but_not_content_or_mirror(tmp_path: Path) -> None:
    first = load_dependency_config(write(tmp_path, GOOD))
    reformatted = load_dependency_config(
        write(
            tmp_path, GOOD.replace("pyyaml", "PyYAML").replace("[funasr==0.8.8]", "\n      - funasr==0.8.8"), "b.yaml"
        )
    )
    bumped = load_dependency_config(write(tmp_path, GOOD.replace("torch==2.4.1", "torch==2.4.2"), "c.yaml"))
    base = first.content_hash(python_version="3.10", mirror=None)
    assert reformatted.content_hash(python_version="3.10", mirror=None) == base
    assert bumped.content_hash(python_version="3.10", mirror=None) != base
    assert first.content_hash(python_version="3.10", mirror="https://mirror/simple") != base
    assert first.content_hash(python_version="3.11", mirror=None) != base


@pytest.mark.parametrize(
    ("text", "key", "words", "line"),
    [
        ("groups:\n  a:\n    packages: [six]\n   bad: [\n", None, "invalid YAML", 4),
        (
            "groups:\n  a:\n    no_dep: true\n    packages: [six]\n",
            "groups.a.no_dep",
            "unknown key 'no_dep' (allowed: description, extra_index_urls, index_url, no_deps, packages)",
            3,
        ),
        (
            "groups:\n  a:\n    packages: six==1.0\n",
            "groups.a.packages",
            "must be a list, got the string 'six==1.0'",
            3,
        ),
        (
            "groups:\n  a:\n    packages:\n      - six\n      - 'numpy>>1'\n",
            "groups.a.packages[1]",
            "invalid requirement 'numpy>>1'",
            5,
        ),
        (
            "groups:\n  a:\n    packages: [six]\n  b:\n    packages: [Six==1.0]\n",
            "groups.b.packages[0]",
            "package 'six' is already in group 'a'",
            5,
        ),
        (
            "groups:\n  a:\n    packages: [six]\ninstall_order: [a, b]\n",
            "install_order[1]",
            "names group 'b', which does not exist",
            4,
        ),
        (
            "groups:\n  a:\n    packages: [six]\n  b:\n    packages: [idna]\ninstall_order:\n  - a\n",
            "install_order",
            "leaves out group 'b'",
            6,
        ),
        (
            "groups:\n  a:\n    packages: [six]\n    index_url: ftp://x\n",
            "groups.a.index_url",
            "index URL must start with",
            4,
        ),
        ("groups: {}\n", "groups", "at least 1 item", 1),
        ("groupz:\n  a:\n    packages: [six]\n", "groupz", "unknown key 'groupz'", 1),
        ("groups:\n  a:\n    packages: [six]\n  a:\n    packages: [idna]\n", "groups.a", "duplicate key", 4),
        ("- just\n- a list\n", "(top level)", "must be a mapping", 1),
        ("groups:\n  a:\n    packages: [six]\n    no_deps: maybe\n", "groups.a.no_deps", "must be true or false", 4),
    ],
)
def test_bad_config_is_one_located_line(tmp_path: Path, text: str, key: str | None, words: str, line: int) -> None:
    path = write(tmp_path, text)
    problems = problems_of(path)
    first = problems[0]
    assert first.startswith(f"{path}:{line}: "), first
    if key:
        assert f": {key}: " in first, first
    assert words in first, first
    assert "\n" not in first and "Traceback" not in first


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "# only a comment\n")
    assert problems_of(path) == [f"{path}: the file is empty"]


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_python_version_contradicting_plugin(tmp_path: Path) -> None:
    path = write(tmp_path, "groups:\n  a:\n    packages: [six]\nmetadata:\n  python_version: '3.11'\n")
    (problem,) = problems_of(path, plugin_python_version="3.10")
    assert problem.startswith(
        f"{path}:5: metadata.python_version: says 3.11 but the project declares python_version 3.10"
    )


def test_all_problems_are_collected(tmp_path: Path) -> None:
    path = write(tmp_path, "groups:\n  a:\n    packages: [six, 'x y z']\n    no_dep: true\n  b:\n    packages: bad\n")
    problems = problems_of(path)
    assert len(problems) == 3
    assert any("groups.a.packages[1]" in problem for problem in problems)
    assert any("groups.a.no_dep" in problem for problem in problems)
    assert any("groups.b.packages" in problem for problem in problems)


def test_project_yaml_models_are_strict(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "dependencies.yaml").write_text("groups:\n  a:\n    packages: [six]\n")
    cases = {
        "  - source: huggingface\n    repo_id: not a repo\n": ("models[0].repo_id", "owner/name"),
        "  - source: url\n    url: https://x/y.bin\n    dest: ../escape.bin\n": ("models[0].dest", "'..'"),
        "  - source: url\n    url: https://x/y.bin\n    dest: /abs/y.bin\n": ("models[0].dest", "relative path"),
        "  - source: local\n    path: a\n    dest: b\n    revison: x\n": (
            "models[0].revison",
            "unknown key 'revison' (allowed: dest, path, source)",
        ),
        "  - source: dropbox\n    path: a\n": ("models[0]", "source"),
        "  - source: url\n    url: https://x/y\n    dest: a/b\n    sha256: xyz\n": (
            "models[0].sha256",
            "64 hex digits",
        ),
    }
    for models, (key, words) in cases.items():
        (project / "project.yaml").write_text(f"name: p\npython_version: '3.10'\nmodels:\n{models}")
        with pytest.raises(ConfigError) as info:
            load_project_folder(project)
        first = info.value.problems[0]
        assert first.startswith(f"{project / 'project.yaml'}:"), first
        assert f": {key}" in first and words in first, first


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("name", "Bad_Name", "project name must be"),
        ("python_version", "3", "python version must look like '3.10'"),
        ("python_version", "2.7", "python version must look like '3.10' (3.8 or newer), got '2.7'"),
    ],
)
def test_project_yaml_name_and_python(tmp_path: Path, field: str, value: str, words: str) -> None:
    project = tmp_path / "p"
    project.mkdir()
    data = {"name": "p", "python_version": "3.10", field: value}
    (project / "project.yaml").write_text("".join(f"{key}: '{item}'\n" for key, item in data.items()))
    with pytest.raises(ConfigError) as info:
        load_project_folder(project)
    assert f"project.yaml:{list(data).index(field) + 1}: {field}: {words}" in info.value.problems[0]
