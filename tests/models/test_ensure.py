"""Start-up mode: the no-op is offline, fast, imports no hub client; the switch turns downloads off."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.fakehub import FakeHub
from tests.helpers import FAST, REPO_ROOT, ProjectMaker
from volume_cli import models
from volume_cli.layout import VolumeLayout


def test_downloads_off_skips_and_reports_incomplete(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files={"config.json": b"{}"})
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    result = models.ensure(
        layout=layout, project=project, hf_endpoints=[hub.url], env={"DOWNLOAD_MODELS_ON_STARTUP": "false"}
    )

    assert result.skipped and not result.complete
    assert result.missing == ("huggingface/model/org/tiny",)
    assert result.download is None and not hub.requests

    fetched = models.ensure(layout=layout, project=project, hf_endpoints=[hub.url], env={})
    assert fetched.complete and not fetched.skipped
    assert fetched.download is not None and fetched.download.models[0].action == "downloaded"

    again = models.ensure(
        layout=layout, project=project, hf_endpoints=[hub.url], env={"DOWNLOAD_MODELS_ON_STARTUP": "0"}
    )
    assert again.skipped and again.complete and again.missing == ()


def test_no_op_with_twenty_models_is_offline_and_imports_no_client(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    specs = []
    for index in range(20):
        hub.add_hf_repo(f"org/m{index}", files={"config.json": b"{}", "w.safetensors": bytes([index]) * 1000})
        specs.append({"source": "huggingface", "repo_id": f"org/m{index}"})
    project = make_project(specs)
    models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST)
    seen = len(hub.requests)  # the hub stays up: zero requests is a choice, not a failure to connect
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from volume_cli.layout import VolumeLayout
        from volume_cli.models import ensure
        from volume_cli.project.discovery import load_project_folder
        started = time.perf_counter()
        result = ensure(layout=VolumeLayout(Path({str(layout.root)!r})), project=load_project_folder(Path({str(project.folder)!r})),
                        hf_endpoints=[{hub.url!r}], env={{}})
        elapsed = time.perf_counter() - started
        loaded = [name for name in ("requests", "huggingface_hub", "modelscope", "modelscope_hub", "httpx") if name in sys.modules]
        print(json.dumps({{"complete": result.complete, "elapsed": elapsed, "loaded": loaded,
                           "actions": sorted({{m.action for m in result.download.models}})}}))
        """
    )
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(output.stdout.strip().splitlines()[-1])

    assert report == {**report, "complete": True, "loaded": [], "actions": ["present"]}
    assert len(hub.requests) == seen


def test_start_script_runs_ensure_then_execs_the_worker(tmp_path: Path) -> None:
    script = REPO_ROOT / "examples" / "start.sh"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    log = tmp_path / "calls"
    (fake_bin / "volume-cli").write_text(f'#!/bin/sh\necho "volume-cli $*" >> {log}\n')
    (fake_bin / "volume-cli").chmod(0o755)
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin", "PROJECT": "demo"}

    done = subprocess.run(
        ["bash", str(script), "echo", "worker started"], env=env, capture_output=True, text=True, timeout=30
    )

    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == ["volume-cli models ensure --project demo"]
    assert done.stdout.strip().endswith("worker started")
