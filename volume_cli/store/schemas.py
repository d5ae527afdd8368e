"""JSON Schemas of every file in the metadata store, exported to ``metadata/``.

``python -m volume_cli.store.schemas metadata/`` rewrites them; a test fails
when the committed schemas drift from the models.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from volume_cli.store.documents import StoreDocument

# (schema file stem, module, class, path of the file on the volume)
DOCUMENTS: list[tuple[str, str, str, str]] = [
    ("volume", "volume_cli.store.state", "VolumeInfo", ".metadata/volume.json"),
    ("project-state", "volume_cli.store.state", "ProjectState", ".metadata/projects/<project>/state.json"),
    ("lock", "volume_cli.store.lock", "LockRecord", ".metadata/locks/<name>.lock"),
    ("deps-lock-info", "volume_cli.deps.documents", "LockInfo", ".metadata/projects/<project>/lock.json"),
    (
        "deps-generation",
        "volume_cli.deps.documents",
        "GenerationRecord",
        ".metadata/projects/<project>/generations/<generation>.json",
    ),
    (
        "deps-store-entry",
        "volume_cli.deps.documents",
        "EntryManifest",
        "python-deps/.store/<entry>/.volume-cli-entry.json",
    ),
    ("model-manifest", "volume_cli.models.manifest", "ModelManifest", ".metadata/models/<model key>.json"),
    (
        "deps-install-intent",
        "volume_cli.deps.documents",
        "InstallIntent",
        ".metadata/projects/<project>/install-intent.json",
    ),
    (
        "sync-generation-manifest",
        "volume_cli.sync.manifest",
        "GenerationManifest",
        ".metadata/projects/<project>/pushed/<generation>.json",
    ),
]


def document_classes() -> list[tuple[str, type[StoreDocument], str]]:
    found: list[tuple[str, type[StoreDocument], str]] = []
    for stem, module_name, class_name, location in DOCUMENTS:
        cls = getattr(importlib.import_module(module_name), class_name)
        found.append((stem, cls, location))
    return found


def render_schemas() -> dict[str, str]:
    rendered: dict[str, str] = {}
    for stem, cls, location in document_classes():
        schema = cls.model_json_schema(mode="serialization")
        schema["$comment"] = f"volume-cli store file {location}, format {cls.SCHEMA_VERSION}"
        rendered[f"{stem}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = folder / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "metadata")
    for path in write_schemas(target):
        print(path)
