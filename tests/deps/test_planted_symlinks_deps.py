"""Planted symlinks on the deps side: no write, rename or removal follows a link out of the volume.

Someone with write access to the shared volume replaces a folder volume-cli
writes or removes under (``python-deps/.store``, ``.generations/<p>``,
``.metadata/locks``, a store entry, the boot folder...) by a link to a folder
of their own. Every case checks that this folder (a canary file and a
sub-folder, under the test's tmp_path only: never a system path) is
byte-for-byte unchanged, and that the command either refused with a
``VolumeCliError`` (one ``error:`` line in the CLI) or, read-only, reported
cleanly: never another exception (a traceback). Dangling links and loops
must be refused or reported the same way.

The volume with three generations is built once per module and copied for
each case (links are copied as links), so most cases cost no uv run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Projects, volume_cli_command
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.consumer_env import consumer_env, write_runtime_copy
from volume_cli.deps import check, deps_status, gc, install, rollback
from volume_cli.errors import VolumeCliError
from volume_cli.flows.setup import run_setup
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import PY

PROJECT = "p"
LOCATIONS = {
    "python-deps": "python-deps",
    "pyX.Y": f"python-deps/py{PY}",
    ".generations": f"python-deps/py{PY}/.generations",
    ".generations/<p>": f"python-deps/py{PY}/.generations/{PROJECT}",
    ".store": "python-deps/.store",
    "store entry": "python-deps/.store/<entry>",
    "staging": "python-deps/.staging",
    ".metadata": ".metadata",
    ".metadata/projects/<p>": f".metadata/projects/{PROJECT}",
    ".metadata/locks": ".metadata/locks",
    ".metadata/logs": ".metadata/logs",
    ".metadata/runtime": ".metadata/runtime",
    ".boot/<p>": f"python-deps/py{PY}/.boot/{PROJECT}",
}
KINDS = ("outside", "dangling", "loop")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A volume where ``p`` has three generations (so rollback and gc have work), and its index."""
    top = tmp_path_factory.mktemp("planted-base")
    wheels = top / "wheels"
    build_wheel(wheels, "alpha", "1.0")
    build_wheel(wheels, "alpha", "2.0")
    build_wheel(wheels, "delta", "1.0")
    build_wheel(wheels, "epsilon", "3.0")
    with pytest.MonkeyPatch.context() as patch, IndexServer(wheels) as index:
        patch.setenv("UV_CACHE_DIR", str(top / "uv"))
        patch.setenv("UV_PYTHON_DOWNLOADS", "never")
        layout = VolumeLayout(top / "volume")
        layout.root.mkdir()
        projects = Projects(top / "projects")
        for packages in (["alpha==1.0"], ["alpha==2.0"], ["delta"]):
            project = projects.make(PROJECT, {"m": {"packages": packages}})
            install(layout=layout, project=project, mirror=index.url, cache_dir=top / "uv", progress=NullProgress())
        write_runtime_copy(layout)
        consumer_env(layout=layout, project=PROJECT, python_version=PY, mount=None)
        (layout.deps_dir / ".staging").mkdir(exist_ok=True)
        (layout.logs_dir).mkdir(parents=True, exist_ok=True)
        yield {"root": layout.root, "index": index, "uv": top / "uv"}


@pytest.fixture
def volume(base: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VolumeLayout:
    monkeypatch.setenv("UV_CACHE_DIR", str(base["uv"]))
    root = tmp_path / "volume"
    shutil.copytree(base["root"], root, symlinks=True)
    return VolumeLayout(root)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """What a planted link points at: a folder of its own under tmp_path, with a canary and a sub-folder."""
    folder = tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    (folder / "canary.txt").write_bytes(b"C" * 1000)
    (folder / "sub" / "inner.txt").write_bytes(b"inner")
    return folder


def snapshot(folder: Path) -> dict[str, tuple[str, bytes | str, int]]:
    """Every path under ``folder`` with its kind, bytes (or link target) and mtime."""
    found: dict[str, tuple[str, bytes | str, int]] = {}
    for path in [folder, *folder.rglob("*")]:
        info = path.lstat()
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = ("link", os.readlink(path), info.st_mtime_ns)
        elif path.is_dir():
            found[name] = ("dir", "", info.st_mtime_ns)
        else:
            found[name] = ("file", path.read_bytes(), info.st_mtime_ns)
    return found


def location_path(layout: VolumeLayout, location: str) -> Path:
    relative = LOCATIONS[location]
    if "<entry>" in relative:
        entry = next(name for name in sorted(os.listdir(layout.store_dir)) if name.startswith("delta-"))
        relative = relative.replace("<entry>", entry)
    return layout.root / relative


def plant(layout: VolumeLayout, location: str, kind: str, outside: Path, tmp_path: Path) -> Path:
    """Move the real folder aside (if any) and put a link in its place."""
    link = location_path(layout, location)
    if link.exists() or link.is_symlink():
        link.rename(tmp_path / f"moved-{link.name}")
    link.parent.mkdir(parents=True, exist_ok=True)
    if kind == "outside":
        os.symlink(outside, link)
    elif kind == "dangling":
        os.symlink(tmp_path / "nowhere" / "gone", link)
    else:
        os.symlink(link.name, link)  # points at itself: ELOOP on every follow
    return link


def _project(tmp_path: Path, packages: list[str]) -> Any:
    return Projects(tmp_path / "projects").make(PROJECT, {"m": {"packages": packages}})


def _install(layout: VolumeLayout, base: dict[str, Any], tmp_path: Path, *, force: bool = False) -> Any:
    packages = ["delta"] if force else ["delta", "epsilon==3.0"]
    return install(
        layout=layout,
        project=_project(tmp_path, packages),
        mirror=base["index"].url,
        cache_dir=base["uv"],
        progress=NullProgress(),
        force=force,
    )


COMMANDS: dict[str, Callable[[VolumeLayout, dict[str, Any], Path], Any]] = {
    "install": lambda layout, base, tmp: _install(layout, base, tmp),
    "install --force": lambda layout, base, tmp: _install(layout, base, tmp, force=True),
    "rollback": lambda layout, base, tmp: rollback(
        layout=layout, project=_project(tmp, ["delta"]), progress=NullProgress()
    ),
    "gc --grace-hours 0": lambda layout, base, tmp: gc(
        layout=layout, grace_seconds=0, dry_run=False, progress=NullProgress()
    ),
    "check": lambda layout, base, tmp: check(layout=layout, project=_project(tmp, ["delta"]), progress=NullProgress()),
    "status": lambda layout, base, tmp: deps_status(layout=layout, project=_project(tmp, ["delta"]), mirror=None),
    "env": lambda layout, base, tmp: consumer_env(layout=layout, project=PROJECT, python_version=PY, mount=None),
    "setup": lambda layout, base, tmp: run_setup(
        layout=layout,
        project=_project(tmp, ["delta", "epsilon==3.0"]),
        mirror=base["index"].url,
        progress=NullProgress(),
    ),
}


def _cases() -> list[Any]:
    return [
        pytest.param(location, command, kind, id=f"{location}-{command}-{kind}")
        for location in LOCATIONS
        for command in COMMANDS
        for kind in KINDS
    ]


@pytest.mark.parametrize(("location", "command", "kind"), _cases())
def test_a_planted_link_is_refused_or_reported_and_nothing_outside_changes(
    volume: VolumeLayout, base: dict[str, Any], outside: Path, tmp_path: Path, location: str, command: str, kind: str
) -> None:
    link = plant(volume, location, kind, outside, tmp_path)
    before = snapshot(outside)
    target_before = os.readlink(link)

    try:
        COMMANDS[command](volume, base, tmp_path)
    except VolumeCliError as exc:
        assert str(exc).strip(), "a refusal names what it refused"
    # any other exception fails the test: the CLI would show it as an internal error with a traceback

    assert snapshot(outside) == before, f"{command} changed the folder a planted {location} link points at"
    # A link we refused to follow is left for the user to inspect, unless it was removed as a link.
    if os.path.islink(link):
        assert os.readlink(link) == target_before


def test_a_refusal_names_the_link_and_how_to_fix_it(
    volume: VolumeLayout, base: dict[str, Any], outside: Path, tmp_path: Path
) -> None:
    link = plant(volume, ".generations/<p>", "outside", outside, tmp_path)
    with pytest.raises(VolumeCliError) as caught:
        gc(layout=volume, grace_seconds=0, dry_run=False, progress=NullProgress())
    assert str(link) in str(caught.value)
    assert caught.value.hint is not None and f"remove the link {link}" in caught.value.hint


@pytest.mark.parametrize(
    ("location", "args"),
    [
        (".store", ["deps", "install", "--project", PROJECT]),
        (".generations/<p>", ["gc", "--grace-hours", "0"]),
        (".metadata/locks", ["deps", "rollback", "--project", PROJECT]),
        (".boot/<p>", ["env", "--project", PROJECT]),
        (".metadata/runtime", ["setup", "--project", PROJECT]),
    ],
)
def test_the_cli_shows_one_error_line_and_a_next_line_never_a_traceback(
    volume: VolumeLayout, base: dict[str, Any], outside: Path, tmp_path: Path, location: str, args: list[str]
) -> None:
    projects = tmp_path / "projects"
    _project(tmp_path, ["delta", "epsilon==3.0"] if args[:2] == ["deps", "install"] else ["delta"])
    plant(volume, location, "outside", outside, tmp_path)
    before = snapshot(outside)
    argv = [*volume_cli_command(), *args, "--root", str(volume.root)]
    if args[0] != "gc":
        argv += ["--projects-dir", str(projects)]
    env = dict(os.environ, VOLUME_CLI_INDEX_URL=base["index"].url)
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)

    assert snapshot(outside) == before
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    assert result.returncode != 0, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "next:" in result.stderr


def test_remove_tree_never_follows_a_link_into_another_tree(tmp_path: Path, outside: Path) -> None:
    from volume_cli.deps.entries import remove_tree

    root = tmp_path / "volume"
    store = root / "python-deps" / ".store"
    store.mkdir(parents=True)
    os.symlink(outside, store / "entry-a")
    before = snapshot(outside)
    remove_tree(store / "entry-a")  # a link is removed as a link
    assert not (store / "entry-a").is_symlink()
    assert snapshot(outside) == before

    generations = root / "python-deps" / f"py{PY}" / ".generations"
    generations.mkdir(parents=True)
    os.symlink(outside, generations / PROJECT)
    with pytest.raises(VolumeCliError):
        remove_tree(generations / PROJECT / "sub")  # through a link: refused, not moved aside
    assert snapshot(outside) == before
    assert sys.platform != "win32"


@pytest.mark.parametrize("forged", ["current", "outside", "other project"])
def test_gc_never_removes_a_folder_a_forged_generation_record_names(
    volume: VolumeLayout, outside: Path, tmp_path: Path, forged: str
) -> None:
    """A record is only trusted to name its own folder: ``.generations/<project>/<generation>``."""
    from volume_cli.deps.documents import GenerationRecord, generation_record_path
    from volume_cli.deps.forest import current_generation
    from volume_cli.store.documents import read_document, write_document

    current = current_generation(volume, PROJECT, PY)
    assert current is not None
    record = read_document(generation_record_path(volume, PROJECT, current), GenerationRecord)
    assert record is not None
    other = volume.generations_dir("q", PY) / "gq"
    (other / "pkg").mkdir(parents=True)
    os.symlink(os.path.relpath(other, volume.python_dir(PY)), volume.deps_path("q", PY))  # q's current: kept
    paths = {
        "current": record.path,
        "outside": os.path.relpath(outside, volume.root),
        "other project": volume.relative(other),
    }
    forged_record = record.model_copy(update={"generation": "gforged", "path": paths[forged]})
    write_document(generation_record_path(volume, PROJECT, "gforged"), forged_record)
    before = snapshot(outside)

    gc(layout=volume, grace_seconds=0, dry_run=False, progress=NullProgress())

    assert snapshot(outside) == before
    assert (volume.generations_dir(PROJECT, PY) / current).is_dir()
    assert (other / "pkg").is_dir()


def test_force_never_repairs_through_a_link_planted_inside_a_store_entry(
    volume: VolumeLayout, base: dict[str, Any], outside: Path, tmp_path: Path
) -> None:
    """``.store/<entry>/delta -> outside``: its files look missing, and the repair must not write them there."""
    entry = location_path(volume, "store entry")
    package = next(path for path in entry.iterdir() if path.is_dir() and not path.name.endswith(".dist-info"))
    package.rename(tmp_path / "moved-package")
    os.symlink(outside, package)
    before = snapshot(outside)

    with pytest.raises(VolumeCliError) as caught:
        _install(volume, base, tmp_path, force=True)

    assert str(package) in str(caught.value)
    assert snapshot(outside) == before


def test_a_model_manifest_is_never_removed_through_a_planted_metadata_models_link(
    volume: VolumeLayout, outside: Path
) -> None:
    from volume_cli.models.manifest import delete_manifest, manifest_path

    key = "huggingface/model/org/tiny"
    (outside / manifest_path(volume, key).name).write_text("{}")  # a copy of the manifests, say a backup
    os.symlink(outside, volume.model_manifests_dir)
    before = snapshot(outside)

    with pytest.raises(VolumeCliError):
        delete_manifest(volume, key)

    assert snapshot(outside) == before
