"""Fitting in: the environment variables people already set, transformers' cache marker, honest dependencies."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import CliResult
from tests.wheelfactory import IndexServer, build_wheel
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


REPO = Path(__file__).resolve().parent.parent


def _declared_runtime_dependencies() -> dict[str, str]:
    """Declared distribution name -> its importable top-level module."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    modules = {canonicalize_name(dist): module for module, dists in _distributions().items() for dist in dists}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # an optional feature's extra (s3: boto3) counts; the test extra is for the suite, not volume_cli
    extras = [
        dep for extra, deps in project.get("optional-dependencies", {}).items() if extra != "test" for dep in deps
    ]
    declared = project["dependencies"] + extras
    result = {}
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        # A dependency for older Pythons only (tomli) is not installed here: its module is its name.
        result[name] = modules.get(name, name.replace("-", "_"))
    return result


def _distributions() -> dict[str, list[str]]:
    import importlib.metadata

    return {module: list(dists) for module, dists in importlib.metadata.packages_distributions().items()}


def _imported_top_level_modules() -> dict[str, str]:
    """Every module volume_cli imports (absolute imports), with one file that imports it."""
    import ast

    found: dict[str, str] = {}
    for path in sorted((REPO / "volume_cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return found


def test_every_import_is_declared_and_every_declared_dependency_is_imported() -> None:
    declared = _declared_runtime_dependencies()
    imported = _imported_top_level_modules()
    third_party = {
        module: where
        for module, where in imported.items()
        if module not in sys.stdlib_module_names and module not in {"volume_cli", "__future__"}
    }
    undeclared = {module: where for module, where in third_party.items() if module not in declared.values()}
    assert undeclared == {}, "imported but not declared in pyproject.toml"
    unused = sorted(name for name, module in declared.items() if module not in imported)
    assert unused == [], "declared in pyproject.toml but never imported by volume_cli"


def test_hf_token_follows_xdg_cache_home_like_the_official_client(tmp_path: Path) -> None:
    token_file = tmp_path / "xdg" / "huggingface" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("hf_from_xdg\n")
    from volume_cli.models.tokens import hf_token

    assert hf_token({"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}) == "hf_from_xdg"
    assert hf_token({"HOME": str(tmp_path / "home")}) is None


def test_hf_token_asks_huggingface_hub_for_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    token_file = tmp_path / "token"
    token_file.write_text("hf_saved_login")
    monkeypatch.setenv("HF_TOKEN_PATH", str(token_file))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))  # as if imported with this environment
    asked: list[bool] = []
    import huggingface_hub

    real = huggingface_hub.get_token
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: asked.append(True) or real())
    import os

    from volume_cli.models.tokens import hf_token

    assert hf_token(dict(os.environ)) == "hf_saved_login" and asked == [True]


def _save_modelscope_login(home: Path, token: str, *, expires_in: int = 3600) -> Path:
    """A login saved the way the ModelScope SDKs save it: a pickled requests cookie jar."""
    import pickle
    import time
    from http.cookiejar import Cookie

    from requests.cookies import RequestsCookieJar

    jar = RequestsCookieJar()
    cookie = Cookie(
        0, "m_session_id", token, None, False, "www.modelscope.cn", True, False, "/", True, False,
        int(time.time()) + expires_in, False, None, None, {},
    )  # fmt: skip
    jar.set_cookie(cookie)
    path = home / ".modelscope" / "credentials" / "cookies"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(jar))
    return path


def test_a_saved_modelscope_login_is_used_with_any_modelscope_version(tmp_path: Path) -> None:
    from volume_cli.models.tokens import modelscope_token

    _save_modelscope_login(tmp_path / "a", "ms_saved_session")
    assert modelscope_token({"HOME": str(tmp_path / "a")}) == "ms_saved_session"
    _save_modelscope_login(tmp_path / "b", "ms_old_session", expires_in=-60)
    assert modelscope_token({"HOME": str(tmp_path / "b")}) is None  # expired, as the client says
    moved = tmp_path / "c"
    _save_modelscope_login(moved, "ms_moved")
    assert modelscope_token({"HOME": str(tmp_path), "MODELSCOPE_HOME": str(moved / ".modelscope")}) == "ms_moved"


def test_the_installed_modelscope_client_login_is_read(tmp_path: Path) -> None:
    modelscope_hub = pytest.importorskip("modelscope_hub.config")  # the client that writes it (modelscope >= 1.38)
    from volume_cli.models.tokens import modelscope_token

    modelscope_hub.HubConfig(config_dir=tmp_path / ".modelscope").save_token("ms_written_by_client")
    assert modelscope_token({"HOME": str(tmp_path)}) == "ms_written_by_client"


def test_a_hostile_cookie_file_is_not_executed(tmp_path: Path) -> None:
    import pickle

    from volume_cli.models.tokens import modelscope_token

    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (open, (str(marker), "w"))

    path = tmp_path / ".modelscope" / "credentials" / "cookies"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(Payload()))
    assert modelscope_token({"HOME": str(tmp_path)}) is None
    assert not marker.exists()


def test_endpoint_defaults_are_the_clients_own_and_modelscope_domain_is_honoured() -> None:
    from huggingface_hub import constants
    from modelscope.hub import constants as ms_constants

    from volume_cli.models.endpoints import HF_DEFAULT_ENDPOINT, MODELSCOPE_DEFAULT_ENDPOINT, resolve_endpoints

    assert HF_DEFAULT_ENDPOINT == constants._HF_DEFAULT_ENDPOINT
    assert MODELSCOPE_DEFAULT_ENDPOINT == "https://" + ms_constants.DEFAULT_MODELSCOPE_DOMAIN
    ms = {"env_var": "MODELSCOPE_ENDPOINT", "default": MODELSCOPE_DEFAULT_ENDPOINT}
    assert resolve_endpoints(None, env={"MODELSCOPE_DOMAIN": "ms.example"}, **ms) == ["https://ms.example"]
    both = {"MODELSCOPE_DOMAIN": "ms.example", "MODELSCOPE_ENDPOINT": "http://other"}
    assert resolve_endpoints(None, env=both, **ms) == ["http://other"]
    hf = {"env_var": "HF_ENDPOINT", "default": HF_DEFAULT_ENDPOINT}
    assert resolve_endpoints(None, env={"MODELSCOPE_DOMAIN": "ms.example"}, **hf) == [HF_DEFAULT_ENDPOINT]


def test_allow_and_ignore_patterns_follow_huggingface_hub() -> None:
    from volume_cli.models.sources import RemoteFile, filter_paths

    files = [RemoteFile(path=path, size=1) for path in ("a.bin", "sub/b.json", "sub/c.bin", "d.json")]
    kept = lambda allow, ignore: [f.path for f in filter_paths(files, allow, ignore)]  # noqa: E731
    assert kept(["sub/"], None) == ["sub/b.json", "sub/c.bin"]
    assert kept(None, ["*.bin"]) == ["d.json", "sub/b.json"]
    assert kept([], []) == ["a.bin", "d.json", "sub/b.json", "sub/c.bin"]  # an empty list is no filter
    assert kept(["*.json"], ["sub/*"]) == ["d.json"]
