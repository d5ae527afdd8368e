"""Where each ModelScope release looks for a model under ``MODELSCOPE_CACHE``.

Read from the releases' own code (``snapshot_download`` / ``ModelFileSystemCache``):

=============  ==================================================  =========
release        folder                                              variant
=============  ==================================================  =========
<= 1.11        ``<cache>/<owner>/<name>``                          ``flat``
1.12 - 1.14    ``<cache>/<owner>/<name___>`` (``.`` -> ``___``;     ``flat-masked``
               model_file_download still uses ``<name>``)
1.15 - 1.22    ``<cache>/hub/<owner>/<name___>``                   ``hub``
1.23 - 1.37    ``<cache>/models/<owner>/<name___>`` (and a link    ``models``
               ``<name>`` -> ``<name___>`` for dotted names)
>= 1.38        ``<cache>/models/<owner>--<name>/snapshots/<rev>``;  ``models``
               modelscope-hub >= 0.1.7 first probes the 1.23 folder
=============  ==================================================  =========

Releases before 1.38 also need the ``.msc`` index (a pickled list of
``{"Path", "Revision"}``) to accept the folder with ``local_files_only``.
With an explicit ``cache_dir=X`` instead of ``MODELSCOPE_CACHE``, releases up
to 1.37 read ``X/<owner>/<name___>``: the flat links cover that too.

The real files live in one folder per revision under
``<cache>/.volume-cli/<owner>/<name>/``, next to a ``current`` link naming
the live one, and every release's folder is a relative symlink to
``current``. An update builds the new revision's folder aside and switches
``current`` with one rename (as ``refs/`` does in the HuggingFace cache), so
a reader of any layout sees the whole old revision or the whole new one; and
since every layout is a link, a project whose workers import another release
never needs the files moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

# Folder names a ModelScope cache root uses itself: an owner with one of these
# names cannot get the flat (<= 1.14) links without colliding with them.
_RESERVED_OWNERS = frozenset({"hub", "models", "datasets", "temp", "._____temp", ".lock"})


STORE_NAME = ".volume-cli"
CURRENT_NAME = "current"


@dataclass(frozen=True)
class MsLayout:
    variant: str
    physical: Path  # the folder the consumer's release reads natively (a link like the others)
    links: tuple[Path, ...]  # every other release's folder
    store: Path  # the revision folders and the ``current`` link

    @property
    def current(self) -> Path:
        return self.store / CURRENT_NAME

    @property
    def folders(self) -> tuple[Path, ...]:
        return (self.physical, *self.links)


def store_folder(cache: Path, model_id: str) -> Path:
    owner, name = model_id.split("/", 1)
    return cache / STORE_NAME / owner / name


def variant_for(version: str | None) -> str:
    if not version:
        return "models"
    try:
        parsed = Version(version)
    except InvalidVersion:
        return "models"
    if parsed < Version("1.12"):
        return "flat"
    if parsed < Version("1.15"):
        return "flat-masked"
    if parsed < Version("1.23"):
        return "hub"
    return "models"


def candidate_folders(cache: Path, model_id: str, revision: str) -> dict[str, Path]:
    owner, name = model_id.split("/", 1)
    masked = name.replace(".", "___")
    folders = {
        "models": cache / "models" / owner / masked,
        "models-raw": cache / "models" / owner / name,  # 1.23+ symlinked this for dotted names
        "hub": cache / "hub" / owner / masked,
        "hub-raw": cache / "hub" / owner / name,  # 1.20+ symlinked this for dotted names
        "snapshot": cache / "models" / f"{owner}--{name}" / "snapshots" / revision,
    }
    if owner not in _RESERVED_OWNERS:
        folders["flat-masked"] = cache / owner / masked
        folders["flat"] = cache / owner / name
    return folders


def plan_layout(cache: Path, model_id: str, revision: str, consumer_version: str | None) -> MsLayout:
    variant = variant_for(consumer_version)
    folders = candidate_folders(cache, model_id, revision)
    if variant not in folders:  # an owner named like a cache folder: fall back to the modern layout
        variant = "models"
    physical = folders[variant]
    links = tuple(dict.fromkeys(path for path in folders.values() if path != physical))
    return MsLayout(variant=variant, physical=physical, links=links, store=store_folder(cache, model_id))
