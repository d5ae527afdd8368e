"""The forest is sound: native code across distributions, namespace packages, other Pythons."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import Projects
from tests.wheelfactory import (
    IndexServer,
    build_wheel,
    compile_extension,
    compile_shared_library,
    extension_source,
    gcc_available,
    pyenv_python,
)
from volume_cli.deps import install
from volume_cli.deps import python as python_module
from volume_cli.deps.elf import search_paths
from volume_cli.errors import ResolutionError
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import PY, import_values

PY_TAG = "cp" + PY.replace(".", "")


def _native_wheels(folder: Path, scratch: Path) -> None:
    """vendorlib ships libvendor.so; nativeext's extension finds it via $ORIGIN/../vendorlib/lib (like torch → nvidia)."""
    library = compile_shared_library("int vendor_value(void) { return 42; }\n", scratch / "libvendor.so")
    build_wheel(
        folder,
        "vendorlib",
        "1.0",
        tag="py3-none-manylinux_2_17_x86_64",
        files={"vendorlib/__init__.py": "", "vendorlib/lib/libvendor.so": library.read_bytes()},
    )
    extension = compile_extension(
        "_core",
        extension_source("_core", "vendor_value() + 1"),
        scratch / "ext",
        rpath="$ORIGIN/../vendorlib/lib",
        libraries=[library],
    )
    build_wheel(
        folder,
        "nativeext",
        "1.0",
        tag=f"{PY_TAG}-abi3-manylinux_2_17_x86_64",
        requires=["vendorlib"],
        files={
            "nativeext/__init__.py": "from ._core import value\n",
            "nativeext/_core.abi3.so": extension.read_bytes(),
        },
    )


@pytest.mark.skipif(not gcc_available(), reason="needs gcc and Python headers")
def test_native_extension_loads_a_library_of_another_distribution_through_origin(
    layout: VolumeLayout, projects: Projects, tmp_path: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    folder = tmp_path / "wheels-native"
    _native_wheels(folder, tmp_path / "build")
    with IndexServer(folder) as index:
        project = projects.make("native", {"main": {"packages": ["nativeext"]}})
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    path = layout.deps_path("native", PY)
    assert import_values(path, {"v": "nativeext.value()"}) == {"v": 43}

    generation = path.resolve()
    # nativeext/ is real so that $ORIGIN/.. is the forest; its files still link into the store
    assert (generation / "nativeext").is_dir() and not (generation / "nativeext").is_symlink()
    assert (generation / "nativeext" / "_core.abi3.so").is_symlink()
    assert (generation / "vendorlib").is_symlink()
    assert search_paths(generation / "nativeext" / "_core.abi3.so") == ["$ORIGIN/../vendorlib/lib"]

    # The naive forest (one link per top-level folder) breaks exactly this: prove the test can fail.
    naive = tmp_path / "naive"
    naive.mkdir()
    for name in os.listdir(generation):
        target = generation / name
        source = target.resolve() if target.is_symlink() else (target / "__init__.py").resolve().parent
        os.symlink(source, naive / name)
    with pytest.raises(AssertionError, match="libvendor"):
        import_values(naive, {"v": "nativeext.value()"})


def test_namespace_package_split_across_distributions(
    layout: VolumeLayout, projects: Projects, tmp_path: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    folder = tmp_path / "wheels-ns"
    build_wheel(folder, "nsp-a", "1.0", files={"nsp/a/__init__.py": "X = 'a'\n"})
    build_wheel(folder, "nsp-b", "1.0", files={"nsp/b/__init__.py": "X = 'b'\n", "nsp/b/deep/__init__.py": "Y = 1\n"})
    build_wheel(folder, "topmod-one", "1.0", files={"topone.py": "X = 1\n"})
    build_wheel(folder, "topmod-two", "1.0", files={"toptwo.py": "X = 2\n"})
    with IndexServer(folder) as index:
        project = projects.make("ns", {"main": {"packages": ["nsp-a", "nsp-b", "topmod-one", "topmod-two"]}})
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    path = layout.deps_path("ns", PY)
    values = import_values(
        path, {"a": "nsp.a.X", "b": "nsp.b.X", "d": "nsp.b.deep.Y", "one": "topone.X", "two": "toptwo.X"}
    )
    assert values == {"a": "a", "b": "b", "d": 1, "one": 1, "two": 2}
    generation = path.resolve()
    assert (generation / "nsp").is_dir() and not (generation / "nsp").is_symlink()
    assert (generation / "nsp" / "a").is_symlink() and (generation / "nsp" / "b").is_symlink()
    # the top-level __pycache__ both modules compiled into is shared, so it is real with linked files
    cache = generation / "__pycache__"
    assert cache.is_dir() and not cache.is_symlink()
    assert sorted(p.name.split(".")[0] for p in cache.iterdir()) == ["topone", "toptwo"]
    assert all(p.is_symlink() for p in cache.iterdir())


PY310 = pyenv_python("3.10")


@pytest.mark.skipif(PY310 is None or PY == "3.10", reason="needs a pyenv CPython 3.10 other than the running one")
def test_a_310_project_installed_from_another_python_imports_with_310(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("old", {"main": {"packages": ["alpha==2.0", "gamma"]}}, python="3.10")
    result = install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert result.python_version == "3.10"
    path = layout.deps_path("old", "3.10")
    assert path.parent.name == "py3.10"
    assert PY310 is not None
    values = import_values(path, {"a": "alpha.VERSION", "g": "gamma.VALUE", "v": "sys.version_info[:2]"}, python=PY310)
    assert values == {"a": "2.0", "g": "gamma", "v": [3, 10]}
    assert list((path / "alpha" / "__pycache__").glob("*.cpython-310.pyc"))


@pytest.mark.skipif(PY310 is None, reason="needs a pyenv CPython 3.10 to import what was installed")
def test_without_an_interpreter_wheels_install_by_tag(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(python_module, "find_interpreter", lambda version, uv=None: None)
    project = projects.make("old", {"main": {"packages": ["alpha==2.0"]}}, python="3.10")
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    path = layout.deps_path("old", "3.10")
    assert not list((path / "alpha").glob("__pycache__/*.pyc"))  # nothing compiled for the wrong Python
    assert PY310 is not None
    assert import_values(path, {"a": "alpha.VERSION"}, python=PY310) == {"a": "2.0"}


def test_a_wheel_for_another_python_is_refused_naming_the_package(
    layout: VolumeLayout, projects: Projects, tmp_path: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    folder = tmp_path / "wheels-tags"
    other = "cp313" if PY != "3.13" else "cp312"
    build_wheel(folder, "onlyother", "1.0", tag=f"{other}-{other}-manylinux_2_17_x86_64")
    build_wheel(folder, "delta", "1.0")
    with IndexServer(folder) as index:
        project = projects.make("tags", {"main": {"packages": ["delta", "onlyother"]}})
        with pytest.raises(ResolutionError, match="onlyother"):
            install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert not layout.deps_path("tags", PY).exists()


def test_forest_survives_a_moved_volume_root(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    tmp_path: Path,
    progress: NullProgress,
    isolated_uv: Path,
) -> None:
    """Pods mount at /workspace, workers at /runpod-volume: every link must be relative."""
    project = projects.make("demo", {"main": {"packages": ["alpha==1.0", "gamma"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    moved = tmp_path / "mounted-elsewhere"
    shutil.move(str(layout.root), moved)
    values = import_values(VolumeLayout(moved).deps_path("demo", PY), {"a": "alpha.VERSION", "g": "gamma.VALUE"})
    assert values == {"a": "1.0", "g": "gamma"}
