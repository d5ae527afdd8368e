"""Where things live under a volume root.

Everything recorded in metadata is relative to the root: pods mount the
volume at /workspace, serverless workers at /runpod-volume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOTS = (Path("/workspace"), Path("/runpod-volume"))
ROOT_ENV = "VOLUME_CLI_ROOT"


@dataclass(frozen=True)
class VolumeLayout:
    root: Path

    @property
    def deps_dir(self) -> Path:
        return self.root / "python-deps"

    @property
    def store_dir(self) -> Path:
        return self.deps_dir / ".store"

    def python_dir(self, python_version: str) -> Path:
        return self.deps_dir / f"py{python_version}"

    def deps_path(self, project: str, python_version: str) -> Path:
        """The stable path users put on PYTHONPATH."""
        return self.python_dir(python_version) / project

    def generations_dir(self, project: str, python_version: str) -> Path:
        return self.python_dir(python_version) / ".generations" / project

    def boot_dir(self, project: str, python_version: str) -> Path:
        """What a worker's PYTHONPATH names (never switched): its sitecustomize pins one generation."""
        return self.python_dir(python_version) / ".boot" / project

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def hf_home(self) -> Path:
        return self.models_dir / "huggingface"

    @property
    def hf_hub_cache(self) -> Path:
        return self.hf_home / "hub"

    @property
    def modelscope_cache(self) -> Path:
        return self.models_dir / "modelscope"

    @property
    def torch_home(self) -> Path:
        return self.models_dir / "torch"

    @property
    def metadata_dir(self) -> Path:
        return self.root / ".metadata"

    @property
    def projects_state_dir(self) -> Path:
        return self.metadata_dir / "projects"

    def project_state_dir(self, project: str) -> Path:
        return self.projects_state_dir / project

    @property
    def locks_dir(self) -> Path:
        return self.metadata_dir / "locks"

    @property
    def logs_dir(self) -> Path:
        return self.metadata_dir / "logs"

    @property
    def model_manifests_dir(self) -> Path:
        return self.metadata_dir / "models"

    def relative(self, path: Path) -> str:
        """``path`` as a POSIX path relative to the root (what metadata stores)."""
        return Path(os.path.relpath(path, self.root)).as_posix()

    def absolute(self, relative: str) -> Path:
        return self.root / relative
