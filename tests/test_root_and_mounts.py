"""Volume root resolution order and the network-volume check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from volume_cli import layout as layout_module
from volume_cli.errors import RootError
from volume_cli.layout import VolumeLayout
from volume_cli.mounts import inspect_mount
from volume_cli.root import require_writable, resolve_root


def test_option_beats_environment_beats_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    option, env_root, workspace, runpod = (tmp_path / name for name in ("opt", "env", "workspace", "runpod-volume"))
    for folder in (option, env_root, workspace, runpod):
        folder.mkdir()
    monkeypatch.setattr(layout_module, "DEFAULT_ROOTS", (workspace, runpod))
    monkeypatch.setattr("volume_cli.root.DEFAULT_ROOTS", (workspace, runpod))
    env = {"VOLUME_CLI_ROOT": str(env_root)}
    assert resolve_root(option, env=env).path == option and resolve_root(option, env=env).source == "option"
    assert resolve_root(None, env=env).path == env_root and resolve_root(None, env=env).source == "environment"
    assert resolve_root(None, env={}).path == workspace
    workspace.rmdir()
    assert resolve_root(None, env={}).path == runpod
    runpod.rmdir()
    with pytest.raises(RootError) as info:
        resolve_root(None, env={})
    assert info.value.hint and "--root" in info.value.hint


def test_missing_root_and_file_root_are_errors(tmp_path: Path) -> None:
    with pytest.raises(RootError, match="does not exist"):
        resolve_root(tmp_path / "nope", env={})
    (tmp_path / "file").write_text("x")
    with pytest.raises(RootError, match="not a directory"):
        resolve_root(tmp_path / "file", env={})
    with pytest.raises(RootError, match="VOLUME_CLI_ROOT"):
        resolve_root(None, env={"VOLUME_CLI_ROOT": str(tmp_path / "nope")})


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_root_is_an_error_for_writers(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(RootError, match="not writable"):
            require_writable(tmp_path)
    finally:
        tmp_path.chmod(0o755)


def test_layout_paths_are_relative_in_metadata(tmp_path: Path) -> None:
    layout = VolumeLayout(tmp_path)
    assert layout.relative(layout.deps_path("demo", "3.10")) == "python-deps/py3.10/demo"
    assert layout.relative(layout.hf_hub_cache) == "models/huggingface/hub"
    assert layout.absolute("models") == tmp_path / "models"


MOUNTINFO = """\
22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/x
30 22 0:40 / /workspace rw,relatime - fuse.mfsmount mfs#10.0.0.1:9421 rw
31 22 0:41 / /data rw,relatime - ext4 /dev/sdb rw
32 22 0:42 / /nfs\\040share rw,relatime - nfs4 server:/export rw
"""


@pytest.mark.parametrize(
    ("path", "kind", "mount_point"),
    [
        ("/workspace/models", "network-volume", "/workspace"),
        ("/workspace", "network-volume", "/workspace"),
        ("/workspacex", "container-disk", "/"),
        ("/data/x", "separate-mount", "/data"),
        ("/nfs share/a", "network-volume", "/nfs share"),
        ("/root", "container-disk", "/"),
    ],
)
def test_mount_classification(tmp_path: Path, path: str, kind: str, mount_point: str) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO)
    info = inspect_mount(Path(path), mountinfo_path=mountinfo)
    assert (info.kind, info.mount_point) == (kind, mount_point)
    assert info.persistent is (kind != "container-disk")
