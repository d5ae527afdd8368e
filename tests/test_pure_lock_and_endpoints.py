"""Unit tests of pure functions that had none (issue 11): generated_pyproject, failing_package, resolve_endpoints.

(compute_plan, select_packages and wheel_rank are in tests/test_pure_functions.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
import tomllib

from volume_cli.config.dependencies import PYPI_SIMPLE_URL, DependencyConfig
from volume_cli.deps.lock import generated_pyproject
from volume_cli.deps.uvtool import failing_package
from volume_cli.models.endpoints import (
    HF_DEFAULT_ENDPOINT,
    MODELSCOPE_DEFAULT_ENDPOINT,
    resolve_endpoints,
)

PINNED = "http://pinned.invalid/simple"
EXTRA = "http://extra.invalid/simple"


def _pyproject(groups: dict[str, Any], *, mirror: str | None = None, **document: Any) -> dict[str, Any]:
    config = DependencyConfig.model_validate({"groups": groups, **document})
    return tomllib.loads(generated_pyproject(config, project="demo", python_version="3.11", mirror=mirror))


def test_generated_pyproject_lists_every_group_in_install_order_for_one_target() -> None:
    document = _pyproject(
        {"b": {"packages": ["six==1.17.0"]}, "a": {"packages": ["Requests[socks]>=2"]}}, install_order=["a", "b"]
    )
    assert document["project"]["name"] == "volume-cli-lock-demo"
    assert document["project"]["dependencies"] == ["Requests[socks]>=2", "six==1.17.0"]  # as written
    marker = "sys_platform == 'linux' and platform_machine == 'x86_64' and python_version == '3.11'"
    assert document["tool"]["uv"]["environments"] == [marker]
    assert document["tool"]["uv"]["required-environments"] == [marker]
    assert document["tool"]["uv"]["index"] == [{"name": "default", "url": PYPI_SIMPLE_URL, "default": True}]
    assert "sources" not in document["tool"]["uv"]


def test_generated_pyproject_pins_a_groups_index_and_keeps_extra_indexes_once() -> None:
    document = _pyproject(
        {
            "main": {"packages": ["alpha"], "extra_index_urls": [EXTRA]},
            "gpu": {"packages": ["torch==2.4.0", "Torch_Vision"], "index_url": PINNED, "extra_index_urls": [EXTRA]},
        },
        mirror="http://mirror.invalid/simple",
    )
    uv = document["tool"]["uv"]
    assert uv["index"] == [
        {"name": "pinned-1", "url": PINNED, "explicit": True},
        {"name": "extra-1", "url": EXTRA},
        {"name": "default", "url": "http://mirror.invalid/simple", "default": True},
    ]
    assert uv["sources"] == {"torch": {"index": "pinned-1"}, "torch-vision": {"index": "pinned-1"}}


def test_generated_pyproject_gives_no_deps_packages_empty_metadata() -> None:
    document = _pyproject({"main": {"packages": ["alpha"]}, "solo": {"packages": ["Beta==1.0"], "no_deps": True}})
    assert document["tool"]["uv"]["dependency-metadata"] == [{"name": "beta", "requires-dist": []}]


@pytest.mark.parametrize(
    ("output", "candidates", "expected"),
    [
        ("  × No solution found when resolving dependencies:\n  ╰─▶ Because alpha==9 was not found", (), "alpha"),
        ("Because only beta<2 is available and you require beta>=2, we can conclude", (), "beta"),
        ("Because there is no version of gamma==1.0 and you require gamma==1.0", (), "gamma"),
        ("error: Failed to download `delta==1.0`\n  Caused by: HTTP status server error (503)", (), "delta"),
        ("error: Failed to build `epsilon @ file:///x`", (), "epsilon"),
        ("error: something odd happened while handling zeta-lib", ("alpha", "zeta-lib"), "zeta-lib"),
        ("error: something odd happened while handling zeta-library", ("zeta-lib",), None),  # whole names only
        ("error: the network is down", ("alpha",), None),
    ],
)
def test_failing_package_names_the_culprit(output: str, candidates: tuple[str, ...], expected: str | None) -> None:
    assert failing_package(output, candidates) == expected


HF: dict[str, str] = {"env_var": "HF_ENDPOINT", "default": HF_DEFAULT_ENDPOINT}
MS: dict[str, str] = {"env_var": "MODELSCOPE_ENDPOINT", "default": MODELSCOPE_DEFAULT_ENDPOINT}


@pytest.mark.parametrize(
    ("explicit", "env", "kind", "expected"),
    [
        (None, {}, HF, [HF_DEFAULT_ENDPOINT]),
        (None, {}, MS, [MODELSCOPE_DEFAULT_ENDPOINT]),
        (["https://a/", "https://b", "https://a"], {"HF_ENDPOINT": "https://env"}, HF, ["https://a", "https://b"]),
        (None, {"HF_ENDPOINT": " https://m1/, https://m2 "}, HF, ["https://m1", "https://m2"]),
        (None, {"HF_ENDPOINT": "   "}, HF, [HF_DEFAULT_ENDPOINT]),
        ([], {"HF_ENDPOINT": "https://env"}, HF, ["https://env"]),
        (None, {"MODELSCOPE_DOMAIN": "ms.example"}, MS, ["https://ms.example"]),
        (None, {"MODELSCOPE_DOMAIN": "http://ms.example"}, MS, ["http://ms.example"]),
        (None, {"MODELSCOPE_DOMAIN": "ms.example", "MODELSCOPE_ENDPOINT": "https://e"}, MS, ["https://e"]),
        (None, {"MODELSCOPE_DOMAIN": "ms.example"}, HF, [HF_DEFAULT_ENDPOINT]),
    ],
)
def test_resolve_endpoints_precedence_and_cleaning(
    explicit: list[str] | None, env: dict[str, str], kind: dict[str, str], expected: list[str]
) -> None:
    assert resolve_endpoints(explicit, env=env, **kind) == expected
