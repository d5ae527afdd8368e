"""Unit tests of the deps engine's pure functions (issue 11), the way pip-tools tests its diff."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from volume_cli.deps.documents import LockedFile, LockedPackage
from volume_cli.deps.entries import Staging, entry_key
from volume_cli.deps.install import uv_install_command
from volume_cli.deps.lock import select_packages
from volume_cli.deps.plan import InstalledDistribution, InstallPlan, PackageChange, compute_plan
from volume_cli.deps.python import TargetPython, wheel_rank
from volume_cli.errors import ResolutionError

PY = "3.11"
WHEEL = "https://files.example/{name}-{version}-py3-none-any.whl"


def locked(name: str, version: str, *, sha: str | None = "ab" * 32, sdist: bool = False) -> LockedPackage:
    artifact = LockedFile(url=WHEEL.format(name=name, version=version), filename=f"{name}-{version}.whl", sha256=sha)
    return LockedPackage(
        name=name, version=version, wheel=None if sdist else artifact, sdist=artifact if sdist else None
    )


def installed(package: LockedPackage, *, version: str | None = None, entry: str | None = "") -> InstalledDistribution:
    key = entry_key(package, PY) if entry == "" else entry
    return InstalledDistribution(package.name, version or package.version, f"{package.name}.dist-info", key)


def plan(
    locked_packages: list[LockedPackage], present: list[InstalledDistribution], *, force: bool = False
) -> InstallPlan:
    return compute_plan(
        project="p",
        python_version=PY,
        current_generation="g1",
        lock_hash="h",
        locked=locked_packages,
        installed={dist.name: dist for dist in present},
        force=force,
    )


def names(changes: tuple[PackageChange, ...]) -> list[str]:
    return [change.name for change in changes]


def test_compute_plan_sorts_every_package_into_one_bucket() -> None:
    same, newer, older, rebuilt, new = (
        locked("same", "1.0"),
        locked("up", "2.0"),
        locked("down", "1.0"),
        locked("other-build", "1.0"),
        locked("new", "1.0"),
    )
    present = [
        installed(same),
        installed(newer, version="1.9"),
        installed(older, version="1.10"),
        installed(rebuilt, entry="other-build-1.0-000000000000-py3.11"),
        InstalledDistribution("gone", "0.1", "gone.dist-info", "gone-0.1-x-py3.11"),
    ]
    result = plan([same, newer, older, rebuilt, new], present)
    assert (names(result.add), names(result.upgrade), names(result.downgrade)) == (["new"], ["up"], ["down"])
    assert (names(result.reinstall), names(result.remove), names(result.unchanged)) == (
        ["other-build"],
        ["gone"],
        ["same"],
    )
    assert result.has_changes and names(result.to_install) == ["new", "up", "down", "other-build"]


def test_compute_plan_with_nothing_to_do_and_with_force() -> None:
    package = locked("alpha", "1.0")
    assert not plan([package], [installed(package)]).has_changes
    assert names(plan([package], [installed(package)], force=True).reinstall) == ["alpha"]
    # A plain folder (no store entry) is rebuilt into the store.
    assert names(plan([package], [installed(package, entry=None)]).reinstall) == ["alpha"]


def test_compute_plan_orders_versions_numerically_and_survives_invalid_ones() -> None:
    assert names(plan([locked("a", "1.10")], [installed(locked("a", "1.9"))]).upgrade) == ["a"]
    assert names(plan([locked("a", "b")], [installed(locked("a", "a"))]).upgrade) == ["a"]


def _pylock(*packages: dict[str, object]) -> dict[str, object]:
    return {"lock-version": "1.0", "packages": list(packages)}


def test_select_packages_takes_the_best_wheel_and_skips_other_environments() -> None:
    data = _pylock(
        {
            "name": "Fast_Lib",
            "version": "1.0",
            "wheels": [
                {"url": "https://x/fast_lib-1.0-py3-none-any.whl"},
                {"url": "https://x/fast_lib-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"},
            ],
        },
        {"name": "winonly", "version": "1.0", "marker": "sys_platform == 'win32'", "wheels": []},
    )
    target = TargetPython(PY, None)
    [chosen] = select_packages(data, target=target, groups_by_package={"fast-lib": "main"}, source="t")
    assert (chosen.name, chosen.group) == ("fast-lib", "main")
    assert chosen.wheel is not None and chosen.wheel.filename.endswith("manylinux_2_17_x86_64.whl")


def test_select_packages_refuses_what_cannot_be_installed() -> None:
    no_fit = _pylock({"name": "a", "version": "1", "wheels": [{"url": "https://x/a-1-cp27-cp27m-win32.whl"}]})
    with pytest.raises(ResolutionError, match=r"no wheel for CPython 3\.11"):
        select_packages(no_fit, target=TargetPython(PY, None), groups_by_package={}, source="t")
    sdist_only = _pylock({"name": "b", "version": "1", "sdist": {"url": "https://x/b-1.tar.gz"}})
    with pytest.raises(ResolutionError, match="only available as a source distribution"):
        select_packages(sdist_only, target=TargetPython(PY, None), groups_by_package={}, source="t")
    [built] = select_packages(
        sdist_only, target=TargetPython(PY, Path(sys.executable)), groups_by_package={}, source="t"
    )
    assert built.wheel is None and built.sdist is not None


def test_wheel_rank_prefers_specific_tags() -> None:
    specific = wheel_rank("a-1-cp311-cp311-manylinux_2_17_x86_64.whl", PY)
    generic = wheel_rank("a-1-py3-none-any.whl", PY)
    assert specific is not None and generic is not None and specific < generic
    assert wheel_rank("a-1-cp312-cp312-manylinux_2_17_x86_64.whl", PY) is None
    assert wheel_rank("not a wheel", PY) is None


def test_uv_install_command_for_hashed_wheels_with_an_interpreter(tmp_path: Path) -> None:
    staging = Staging(tmp_path)
    command = uv_install_command(
        "uv",
        [locked("a", "1")],
        staging=staging,
        requirements=tmp_path / "r.txt",
        target=TargetPython(PY, Path("/py")),
        mirror=None,
    )
    assert command[:4] == ["uv", "pip", "install", "--no-config"]
    assert "--require-hashes" in command and "--no-index" in command
    assert command[command.index("--python") + 1] == "/py" and "--compile-bytecode" not in command  # deps/bytecode.py


def test_uv_install_command_without_interpreter_or_hashes_and_with_an_sdist(tmp_path: Path) -> None:
    staging = Staging(tmp_path)
    wheels_only = uv_install_command(
        "uv",
        [locked("a", "1", sha=None)],
        staging=staging,
        requirements=tmp_path / "r.txt",
        target=TargetPython(PY, None),
        mirror=None,
    )
    assert "--require-hashes" not in wheels_only
    assert wheels_only[wheels_only.index("--python-version") + 1] == PY and ":all:" in wheels_only
    with_sdist = uv_install_command(
        "uv",
        [locked("b", "1", sdist=True)],
        staging=staging,
        requirements=tmp_path / "r.txt",
        target=TargetPython(PY, Path("/py")),
        mirror="https://mirror/simple",
    )
    assert with_sdist[with_sdist.index("--default-index") + 1] == "https://mirror/simple"
    assert "--no-index" not in with_sdist


def test_each_package_has_one_kind_of_change() -> None:
    same, newer, gone = locked("same", "1.0"), locked("up", "2.0"), locked("gone", "1.0")
    result = plan([same, newer], [installed(same), installed(newer, version="1.0"), installed(gone)])
    assert result.kinds() == {"same": "unchanged", "up": "upgrade", "gone": "remove"}


def test_install_check_and_list_share_one_comparison() -> None:
    # Three comparisons of locked against installed, each with its own vocabulary, drifted apart once.
    import ast
    import importlib
    import inspect

    # importlib: the package re-exports functions named like these modules, which shadow them as attributes.
    install_module, check_module, status_module = (
        importlib.import_module(f"volume_cli.deps.{name}") for name in ("install", "check", "status")
    )

    for module, function in (
        (install_module, "_plan"),
        (check_module, "_against_lock"),
        (status_module, "list_packages"),
    ):
        source = inspect.getsource(getattr(module, function))
        called = {
            node.func.id
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        assert "compute_plan" in called, f"{module.__name__}.{function}"
