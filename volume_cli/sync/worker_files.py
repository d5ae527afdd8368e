"""The files a worker starts from, put on a volume that has none: the boot folder and the runtime copy.

A worker applies a pushed generation itself (volume_cli/pushed_apply.py), but only through the boot
folder ``env`` names or the runtime copy ``activate()`` is run from. A pod's install or apply writes
them; a volume that only ever received pushes gets them here, so its first worker needs no pod. Files a
volume already has are never overwritten: a worker may be reading them, and S3 says nothing about what a
reader sees during a PUT (the next apply on a pod refreshes them with one rename each). One HEAD per
group when they are there.
"""

from __future__ import annotations

from pathlib import Path

from volume_cli.layout import VolumeLayout
from volume_cli.remote.objects import RemoteBucket


def worker_files(layout: VolumeLayout, project: str, python_version: str) -> list[list[tuple[str, bytes]]]:
    """Groups of (object key, bytes), each ending with the file whose presence says the group is there."""
    from volume_cli import consumer_env, local_copy, pushed_apply, runtime, worker_boot

    def relative(path: Path) -> str:
        return layout.relative(path)

    boot = layout.boot_dir(project, python_version)
    runtime_file = layout.absolute(consumer_env.RUNTIME_FILE)
    blocker = consumer_env.BOOT_BYTECODE_BLOCKER
    # The boot (and the runtime copy) last in their group: they never run without their siblings.
    return [
        [
            (relative(boot / blocker), b""),
            (relative(boot / worker_boot.LOCAL_COPY_FILE), Path(local_copy.__file__).read_bytes()),
            (relative(boot / worker_boot.PUSHED_APPLY_FILE), Path(pushed_apply.__file__).read_bytes()),
            (relative(boot / "sitecustomize.py"), Path(worker_boot.__file__).read_bytes()),
        ],
        [
            (relative(runtime_file.parent / blocker), b""),
            (relative(runtime_file.parent / runtime.LOCAL_COPY_FILE), Path(local_copy.__file__).read_bytes()),
            (relative(runtime_file.parent / runtime.PUSHED_APPLY_FILE), Path(pushed_apply.__file__).read_bytes()),
            (relative(runtime_file), Path(runtime.__file__).read_bytes()),
        ],
        [(relative(layout.hf_hub_cache / "version.txt"), consumer_env.HUB_VERSION)],
    ]


def seed_worker_files(bucket: RemoteBucket, layout: VolumeLayout, project: str, python_version: str) -> int:
    """Upload each group the volume lacks (judged by its last file); returns the files uploaded."""
    uploaded = 0
    for group in worker_files(layout, project, python_version):
        if bucket.head(group[-1][0]) is not None:
            continue
        for key, body in group:
            bucket.put(key, body, {})
            uploaded += 1
    return uploaded
