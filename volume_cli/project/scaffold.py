"""``projects new``: a working project folder with a commented config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from volume_cli.config.dependencies import check_python_version
from volume_cli.errors import UsageError
from volume_cli.project.definition import check_project_name

_PLUGIN_TEMPLATE = '''"""{name}: a volume-cli project."""

from volume_cli import HookContext, Project


class {class_name}(Project):
    """{name} (edit this description)."""

    name = "{name}"
    python_version = "{python}"
    # Models go into the shared models/ folder of the volume, for example:
    #   from volume_cli import HuggingFaceModel, ModelScopeModel, UrlModel, LocalModel
    #   models = [
    #       HuggingFaceModel(repo_id="openai/whisper-tiny", revision="main", allow_patterns=["*.json", "*.safetensors"]),
    #       ModelScopeModel(model_id="iic/speech_campplus_sv_zh-cn_16k-common"),
    #       UrlModel(url="https://example.com/model.ckpt", dest="comfyui/checkpoints/model.ckpt", sha256="..."),
    #   ]
    models = []

    def after_install(self, context: HookContext) -> None:
        """Runs after a new set of dependencies became current (optional)."""
'''

_DEPENDENCIES_TEMPLATE = """# Dependencies of {name}, installed into python-deps/py{python}/{name} on the volume.
#
# Each group has its own package index. A group whose index_url is null uses
# PyPI, or the mirror given with --index-url / VOLUME_CLI_INDEX_URL
# (for example https://pypi.tuna.tsinghua.edu.cn/simple).
groups:
  # pytorch:
  #   description: PyTorch built for CUDA 12.1
  #   index_url: https://download.pytorch.org/whl/cu121
  #   packages:
  #     - torch==2.4.1
  standard:
    description: Packages from PyPI (or the mirror)
    index_url: null
    packages:
      - requests>=2.31
  # A group with no_deps: true installs exactly what it lists, without
  # dependencies: for packages whose declared dependencies are wrong.
  # patched:
  #   no_deps: true
  #   packages:
  #     - funasr==0.8.8

# Every group, once, in the order they are listed for installation.
install_order:
  - standard

metadata:
  python_version: "{python}"
  description: {name}
"""


@dataclass(frozen=True)
class ScaffoldResult:
    name: str
    folder: Path
    files: list[Path]


def scaffold_project(*, name: str, python_version: str, parent: Path) -> ScaffoldResult:
    try:
        check_project_name(name)
        check_python_version(python_version)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    folder = parent / name.replace("-", "_")
    if folder.exists():
        raise UsageError(f"{folder} already exists", hint="choose another name or remove that folder")
    folder.mkdir(parents=True)
    class_name = "".join(part.capitalize() for part in name.split("-")) + "Project"
    if class_name[0].isdigit():
        class_name = "P" + class_name
    plugin = folder / "project.py"
    dependencies = folder / "dependencies.yaml"
    plugin.write_text(_PLUGIN_TEMPLATE.format(name=name, python=python_version, class_name=class_name))
    dependencies.write_text(_DEPENDENCIES_TEMPLATE.format(name=name, python=python_version))
    return ScaffoldResult(name=name, folder=folder, files=[plugin, dependencies])
