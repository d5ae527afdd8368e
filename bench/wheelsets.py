"""The wheel sets the deps benchmarks install: real wheels from PyPI, downloaded once, served from 127.0.0.1.

``FULL`` is 44 wheels for CPython of the running version (numpy, scipy, pandas, scikit-learn,
fastapi, uvicorn, pydantic, transformers and their dependencies, about 100 MB); ``SMALL`` is
numpy, requests, pyyaml and tqdm with their dependencies. Each names a leaf whose version a
step changes (tqdm) and a package a step removes.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

TOP_LEVEL = ["numpy", "scipy", "pandas", "scikit-learn", "fastapi", "uvicorn", "pydantic", "transformers", "tqdm"]
LEAF_OLD, LEAF_NEW = "tqdm==4.66.5", "tqdm==4.70.1"
REMOVED = "uvicorn"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class WheelSet:
    """What each step asks for: the packages, a leaf whose version changes, one package removed."""

    name: str
    packages: tuple[str, ...]
    leaf_old: str
    leaf_new: str
    removed: str
    imports: str  # the worker's cold import

    def requirements(self, step: str) -> list[str]:
        if step in ("full install", "no-op"):
            return [*self.packages, self.leaf_old]
        kept = [name for name in self.packages if step != "one package removed" or name != self.removed]
        return [*kept, self.leaf_new]


SMALL = WheelSet(
    "small set (numpy, requests, pyyaml, tqdm + 4 deps)",
    ("numpy", "requests", "pyyaml"),
    LEAF_OLD,
    LEAF_NEW,
    "pyyaml",
    "import numpy, requests, tqdm",
)
FULL = WheelSet(
    "full set (44 wheels)",
    tuple(name for name in TOP_LEVEL if name != "tqdm"),
    LEAF_OLD,
    LEAF_NEW,
    REMOVED,
    "import numpy, pandas, sklearn, transformers",
)


def small_wheelhouse(folder: Path) -> Path:
    if len(list(folder.glob("*.whl"))) >= 9:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--only-binary", ":all:", "-d", str(folder)]
    subprocess.run([*pip, *SMALL.packages, SMALL.leaf_new], check=True)
    subprocess.run([*pip, "--no-deps", SMALL.leaf_old], check=True)
    return folder


def ensure_wheelhouse(folder: Path) -> Path:
    """The full set's wheels in ``folder``, downloaded with pip the first time."""
    if folder.is_dir() and len(list(folder.glob("*.whl"))) >= 40:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    base = [sys.executable, "-m", "pip", "download", "--only-binary", ":all:", "--python-version", PYTHON]
    base += ["--implementation", "cp", *(f"--platform={platform}" for platform in platforms), "-d", str(folder)]
    subprocess.run([*base, *[name for name in TOP_LEVEL if name != "tqdm"], LEAF_NEW], check=True)
    subprocess.run([*base, "--no-deps", LEAF_OLD], check=True)
    return folder


def make_project(folder: Path, requirements: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "project.yaml").write_text(yaml.safe_dump({"name": folder.name, "python_version": PYTHON}))
    (folder / "dependencies.yaml").write_text(yaml.safe_dump({"groups": {"main": {"packages": requirements}}}))
