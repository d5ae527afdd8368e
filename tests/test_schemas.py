"""The committed JSON Schemas in metadata/ match the store's models."""

from __future__ import annotations

from pathlib import Path

from volume_cli.store.schemas import DOCUMENTS, render_schemas

METADATA = Path(__file__).resolve().parent.parent / "metadata"


def test_committed_schemas_match_the_models() -> None:
    rendered = render_schemas()
    stale = [
        name
        for name, text in rendered.items()
        if not (METADATA / name).is_file() or (METADATA / name).read_text() != text
    ]
    assert not stale, f"regenerate with: python -m volume_cli.store.schemas metadata  (stale: {stale})"
    extra = {path.name for path in METADATA.glob("*.schema.json")} - set(rendered)
    assert not extra, f"schemas without a model: {extra}"


def test_every_schema_is_documented_in_the_readme() -> None:
    readme = (METADATA / "README.md").read_text()
    for stem, _module, _cls, location in DOCUMENTS:
        assert f"{stem}.schema.json" in readme and location in readme
