"""Old hub clients load what the engine wrote, with the network off.

modelscope 1.10.0 (reads ``<cache>/<owner>/<name>`` plus its ``.msc`` index)
and huggingface_hub 0.26.5 are installed with ``pip --no-deps --target``
(plus the libraries modelscope 1.10 imports) into a cache folder reused by
later runs, then run in a subprocess with ``PYTHONPATH`` pointing there.
Skipped when pip cannot fetch them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker
from volume_cli import models
from volume_cli.layout import VolumeLayout

pytestmark = pytest.mark.slow

OLD_CLIENTS = [
    "modelscope==1.10.0",
    "huggingface_hub==0.26.5",
    # what modelscope 1.10 imports on the way to snapshot_download
    "addict==2.4.0",
    "attrs==25.3.0",
    "yapf==0.43.0",
    "platformdirs==4.3.8",
    "gast==0.6.0",
    "simplejson==3.20.1",
    "sortedcontainers==2.4.0",
    "pandas==2.2.3",
    "numpy==2.2.6",
    "python-dateutil==2.9.0.post0",
    "pytz==2025.2",
    "tzdata==2025.2",
    "six==1.17.0",
]

FILES = {
    "configuration.json": b'{"framework": "pytorch"}',
    "pytorch_model.bin": os.urandom(50_000),
    "sub/vocab.txt": b"x\ny\n",
}


def _cache_root() -> Path:
    configured = os.environ.get("VOLUME_CLI_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "volume-cli-tests"


@pytest.fixture(scope="module")
def old_clients() -> Path:
    digest = hashlib.sha256(f"{sys.version_info[:2]} {' '.join(OLD_CLIENTS)}".encode()).hexdigest()[:12]
    target = _cache_root() / f"old-clients-{digest}"
    if (target / ".complete").exists():
        return target
    staging = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--disable-pip-version-check",
        "--target",
        str(staging),
        *OLD_CLIENTS,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.skip("pip took too long to fetch the old clients")
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.skip(f"pip cannot fetch the old clients: {done.stderr.strip().splitlines()[-1:]}")
    (staging / ".complete").write_text("\n".join(OLD_CLIENTS))
    try:
        staging.rename(target)
    except OSError:  # another run finished first
        shutil.rmtree(staging, ignore_errors=True)
    return target


LOADER = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import huggingface_hub, modelscope
    from huggingface_hub import hf_hub_download, snapshot_download
    from modelscope.hub.snapshot_download import snapshot_download as ms_snapshot
    from modelscope.hub.file_download import model_file_download

    def digests(folder):
        found = {}
        for current, _dirs, files in os.walk(folder):
            for name in files:
                if not name.startswith("."):
                    path = os.path.join(current, name)
                    found[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
        return found

    hf_folder = snapshot_download("org/old-hf")
    ms_folder = ms_snapshot("owner/ms.model", local_files_only=True)
    single = model_file_download("owner/ms.model", "sub/vocab.txt", local_files_only=True)
    print(json.dumps({
        "versions": [huggingface_hub.__version__, modelscope.__version__],
        "hf": digests(hf_folder),
        "hf_single": open(hf_hub_download("org/old-hf", "sub/vocab.txt"), "rb").read().decode(),
        "ms_folder": ms_folder,
        "ms": digests(ms_folder),
        "ms_single": open(single, "rb").read().decode(),
    }))
    """
)


@pytest.mark.parametrize("consumer", ["1.10.0", None])
def test_old_clients_load_the_volume_offline(
    old_clients: Path, hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, consumer: str | None
) -> None:
    hub.add_hf_repo("org/old-hf", files=FILES)
    hub.add_ms_repo("owner/ms.model", files=FILES)
    project = make_project(
        [{"source": "huggingface", "repo_id": "org/old-hf"}, {"source": "modelscope", "model_id": "owner/ms.model"}]
    )
    models.download(
        layout=layout,
        project=project,
        hf_endpoints=[hub.url],
        modelscope_endpoints=[hub.url],
        consumer_modelscope_version=consumer,
        **FAST,
    )
    hub.stop()  # the network is off: only the volume can answer
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(layout.root.parent / "home"),
        "PYTHONPATH": str(old_clients),
        "HF_HOME": str(layout.hf_home),
        "HF_HUB_OFFLINE": "1",
        "MODELSCOPE_CACHE": str(layout.modelscope_cache),
        "MODELSCOPE_DOMAIN": hub.url.removeprefix("http://"),
    }

    done = subprocess.run([sys.executable, "-c", LOADER], env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {path: hashlib.sha256(data).hexdigest() for path, data in FILES.items()}
    assert report["versions"] == ["0.26.5", "1.10.0"]
    assert report["hf"] == expected and report["hf_single"] == "x\ny\n"
    assert report["ms"] == expected and report["ms_single"] == "x\ny\n"
    assert Path(report["ms_folder"]) == layout.modelscope_cache / "owner" / "ms.model"
    # every release's folder, 1.10's included, is a link to the live revision folder
    assert (layout.modelscope_cache / "owner" / "ms.model").is_symlink()
