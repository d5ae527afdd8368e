"""$ORIGIN paths that climb out of a top-level folder resolve in the generation, as in site-packages.

torch's wheel ships ``functorch/_C.so`` with RPATH ``$ORIGIN/../torch/lib``: the
path stays inside torch's own distribution, but the libraries it reaches
(``torch/lib/libtorch_cuda.so``) look for ``$ORIGIN/../../nvidia/...``, which
only exists in the generation. Through a linked ``functorch/`` the kernel
resolves ``..`` inside the store entry and nvidia is not there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Projects
from tests.wheelfactory import IndexServer, build_wheel, compile_extension, compile_shared_library, gcc_available
from volume_cli.deps import install
from volume_cli.deps.documents import ENTRY_MANIFEST
from volume_cli.deps.entries import read_entry_manifest
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.store.documents import write_document

from .helpers import PY, import_values

PY_TAG = "cp" + PY.replace(".", "")

_EXTENSION = """
#include <Python.h>
extern int core_value(void);
static PyObject *value(PyObject *self, PyObject *args) { return PyLong_FromLong(core_value()); }
static PyMethodDef methods[] = {{"value", value, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef definition = {PyModuleDef_HEAD_INIT, "_C", NULL, -1, methods};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&definition); }
"""


def _torch_like_wheels(folder: Path, scratch: Path) -> None:
    """vendorlib plays nvidia; torchish ships torchish/lib/libcore.so and functorchish/_C (one distribution)."""
    vendor = compile_shared_library("int vendor_value(void) { return 20; }\n", scratch / "libvendor.so")
    build_wheel(
        folder,
        "vendorlib",
        "1.0",
        tag="py3-none-manylinux_2_17_x86_64",
        files={"vendorlib/__init__.py": "", "vendorlib/lib/libvendor.so": vendor.read_bytes()},
    )
    core = compile_shared_library(
        "extern int vendor_value(void);\nint core_value(void) { return vendor_value() + 1; }\n",
        scratch / "core" / "libcore.so",
        rpath="$ORIGIN/../../vendorlib/lib",
        libraries=[vendor],
    )
    extension = compile_extension("_C", _EXTENSION, scratch / "ext", rpath="$ORIGIN/../torchish/lib", libraries=[core])
    build_wheel(
        folder,
        "torchish",
        "1.0",
        tag=f"{PY_TAG}-abi3-manylinux_2_17_x86_64",
        requires=["vendorlib"],
        files={
            "torchish/__init__.py": "",
            "torchish/lib/libcore.so": core.read_bytes(),
            "functorchish/__init__.py": "from ._C import value\n",
            "functorchish/_C.abi3.so": extension.read_bytes(),
        },
    )


@pytest.mark.skipif(not gcc_available(), reason="needs gcc and Python headers")
def test_an_extension_reaching_a_sibling_folder_of_its_own_wheel_loads_first(
    layout: VolumeLayout, projects: Projects, tmp_path: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    folder = tmp_path / "wheels-origin"
    _torch_like_wheels(folder, tmp_path / "build")
    with IndexServer(folder) as index:
        project = projects.make("origin", {"main": {"packages": ["torchish"]}})
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    path = layout.deps_path("origin", PY)
    # functorchish first, before anything made torchish's libraries resident
    assert import_values(path, {"v": "functorchish.value()"}) == {"v": 21}
    generation = path.resolve()
    assert (generation / "functorchish").is_dir() and not (generation / "functorchish").is_symlink()
    assert (generation / "torchish").is_dir() and not (generation / "torchish").is_symlink()


def test_a_climb_into_a_self_contained_folder_of_the_same_wheel_keeps_its_link(tmp_path: Path) -> None:
    """auditwheel's ``$ORIGIN/../numpy.libs`` reaches libraries that need nothing outside the entry: no extra links."""
    from volume_cli.deps.entries import _origin_real_dirs

    searches = {
        "numpy/core/_multiarray.so": ["$ORIGIN/../../numpy.libs"],
        "numpy.libs/libopenblas.so": ["$ORIGIN"],
    }
    files = {path: 1 for path in searches} | {"numpy/__init__.py": 1}
    assert _origin_real_dirs(files, searches.__getitem__) == []
    torch = {
        "torch/lib/libtorch_cuda.so": ["$ORIGIN/../../nvidia/nvtx/lib", "$ORIGIN"],
        "torch/lib/libc10.so": [],
        "torch/_C.so": ["$ORIGIN/lib"],
        "functorch/_C.so": ["$ORIGIN/../torch/lib"],
        "torch/_inductor/deep/x.so": ["$ORIGIN/../../../functorch"],
        "caffe2/thing.so": ["$ORIGIN/../numpy.libs"],
    }
    files = {path: 1 for path in torch}
    assert _origin_real_dirs(files, lambda path: torch.get(path, [])) == [
        "caffe2",
        "functorch",
        "torch",
        "torch/_inductor",
        "torch/_inductor/deep",
        "torch/lib",
    ]


@pytest.mark.skipif(not gcc_available(), reason="needs gcc and Python headers")
def test_force_teaches_entries_made_by_the_old_rule_which_folders_to_make_real(
    layout: VolumeLayout, projects: Projects, tmp_path: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    folder = tmp_path / "wheels-origin"
    _torch_like_wheels(folder, tmp_path / "build")
    with IndexServer(folder) as index:
        project = projects.make("origin", {"main": {"packages": ["torchish"]}})
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
        # an entry stored by an older volume-cli knew only torchish/ and torchish/lib
        [entry] = [path for path in layout.store_dir.iterdir() if path.name.startswith("torchish-")]
        manifest = read_entry_manifest(layout, entry.name)
        assert manifest is not None and "functorchish" in manifest.info.real_dirs
        old_info = manifest.info.model_copy(update={"real_dirs": ["torchish", "torchish/lib"]})
        write_document(entry / ENTRY_MANIFEST, manifest.model_copy(update={"info": old_info}))
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress, force=True)
    assert import_values(layout.deps_path("origin", PY), {"v": "functorchish.value()"}) == {"v": 21}
    refreshed = read_entry_manifest(layout, entry.name)
    assert refreshed is not None and "functorchish" in refreshed.info.real_dirs
