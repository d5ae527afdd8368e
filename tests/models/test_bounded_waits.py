"""Every network wait of a models download is bounded: trickling hubs, silent hubs, an overall deadline.

Each call runs in a thread joined with a timeout, so a regression fails the
test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fakehub import FakeHub
from tests.helpers import REPO_ROOT, ProjectMaker, range_headers
from volume_cli import models
from volume_cli.errors import DeadlineError, DownloadError, LockHeldError
from volume_cli.layout import VolumeLayout
from volume_cli.models.http import HttpClient, RetryPolicy
from volume_cli.models.manifest import safe_key
from volume_cli.models.staging import staging_dir

WEIGHTS = os.urandom(300_000)


def bounded(call: Callable[[], Any], *, within: float) -> tuple[Any, BaseException | None, float]:
    """Run ``call`` in a thread; fail the test if it is still running after ``within`` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # the test inspects it
            box["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(within)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"still running after {within}s: the wait is not bounded"
    return box.get("result"), box.get("error"), elapsed


def test_a_file_trickling_at_20_bytes_per_second_is_cut_and_names_the_host(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/files", files={"vae.safetensors": WEIGHTS})
    project = make_project(
        [{"source": "url", "url": f"{hub.url}/org/files/resolve/main/vae.safetensors", "dest": "vae.bin"}]
    )
    hub.throttle(20)  # HEAD has no body: only the file itself trickles

    _, error, elapsed = bounded(
        lambda: models.download(layout=layout, project=project, timeout=1.0, retries=4, backoff=0.01), within=15
    )

    assert isinstance(error, DownloadError)
    assert "too slow" in str(error) and f"127.0.0.1:{hub.port}" in str(error)
    assert elapsed < 6, elapsed  # one window of --timeout, not five attempts of it
    partial = staging_dir(layout) / f"{safe_key('url/vae.bin')}.part"
    assert partial.is_file() and partial.stat().st_size > 0  # kept for the resume


def test_a_trickling_listing_is_bounded_too(hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker) -> None:
    hub.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS})
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    hub.throttle(20)

    _, error, elapsed = bounded(
        lambda: models.download(
            layout=layout, project=project, hf_endpoints=[hub.url], timeout=1.0, retries=4, backoff=0.01
        ),
        within=15,
    )

    assert isinstance(error, DownloadError) and "too slow" in str(error), error
    assert elapsed < 6, elapsed


def test_a_fast_enough_transfer_is_not_cut(hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker) -> None:
    hub.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS})
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    hub.throttle(200_000)  # 1.5 s for the file: longer than the 1 s window, above the minimum

    result, error, _ = bounded(
        lambda: models.download(
            layout=layout, project=project, hf_endpoints=[hub.url], timeout=1.0, retries=0, min_rate=50_000
        ),
        within=20,
    )

    assert error is None and result.models[0].action == "downloaded"


def test_a_silent_hub_listing_fails_within_one_timeout_naming_the_host(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS})
    hub.hang(match="/api/")
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    _, error, elapsed = bounded(
        lambda: models.download(
            layout=layout, project=project, hf_endpoints=[hub.url], timeout=1.0, retries=4, backoff=0.01
        ),
        within=15,
    )

    assert isinstance(error, DownloadError)
    assert f"no answer from 127.0.0.1:{hub.port}" in str(error) and "after 1 attempt)" in str(error)
    assert elapsed < 2.5, elapsed  # was 5 attempts x --timeout


def test_fast_failures_are_still_retried(hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker) -> None:
    hub.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS})
    hub.fail_next(3, status=503, match="/api/")
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    result = models.download(
        layout=layout, project=project, hf_endpoints=[hub.url], timeout=2.0, retries=4, backoff=0.01
    )

    assert result.models[0].action == "downloaded"


def test_the_overall_deadline_stops_a_slow_download_and_the_next_run_resumes(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    big = os.urandom(3_000_000)
    hub.add_hf_repo("org/big", files={"model.safetensors": big})
    project = make_project([{"source": "huggingface", "repo_id": "org/big"}])
    hub.throttle(400_000)  # fast enough for the minimum speed, 7.5 s for the file

    _, error, elapsed = bounded(
        lambda: models.download(layout=layout, project=project, hf_endpoints=[hub.url], timeout=5.0, deadline=1.5),
        within=15,
    )

    assert isinstance(error, DownloadError), error
    assert isinstance(error.failures["huggingface/model/org/big"], DeadlineError)
    assert "--deadline of 1.5s ran out" in str(error) and f"127.0.0.1:{hub.port}" in str(error)
    assert elapsed < 3.5, elapsed
    hub.clear_faults()
    hub.clear_requests()
    result = models.download(layout=layout, project=project, hf_endpoints=[hub.url], timeout=5.0)
    assert result.models[0].action == "downloaded"
    resumed = range_headers(hub, "/resolve/")
    assert resumed and resumed[0] is not None and resumed[0].startswith("bytes=")


def test_the_deadline_also_bounds_waiting_for_a_model_lock(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    from volume_cli.models.manifest import model_lock_path
    from volume_cli.store.lock import LeaseLock

    hub.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS})
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    with LeaseLock(model_lock_path(layout, "huggingface/model/org/tiny"), command="other pod"):
        _, error, elapsed = bounded(
            lambda: models.download(layout=layout, project=project, hf_endpoints=[hub.url], timeout=5.0, deadline=1.0),
            within=15,
        )
    assert isinstance(error, LockHeldError) and 0.9 < elapsed < 3.5, (error, elapsed)


def test_a_cancelled_client_stops_a_blocked_read_promptly(hub: FakeHub) -> None:
    hub.add_hf_repo("org/files", files={"big.bin": os.urandom(2_000_000)})
    hub.throttle(100_000)
    client = HttpClient(RetryPolicy(timeout=30.0, retries=0, min_rate=0))
    url = f"{hub.url}/org/files/resolve/main/big.bin"
    response = client.get(url, {}, stream=True)
    read = client.guarded_reader(lambda: bytes(response.raw.read1(65536)), url)
    read()

    threading.Timer(0.3, client.cancel).start()
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        while read():
            pass
    assert time.monotonic() - started < 1.5
    assert type(caught.value).__name__ == "Cancelled"


@pytest.mark.parametrize("retries", [pytest.param(4, id="retries-4")])
def test_two_silent_mirrors_cost_one_timeout_each(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, retries: int
) -> None:
    with FakeHub() as second:
        for server in (hub, second):
            server.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS})
            server.hang()
        project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

        _, error, elapsed = bounded(
            lambda: models.download(
                layout=layout,
                project=project,
                hf_endpoints=[hub.url, second.url],
                timeout=0.5,
                retries=retries,
                backoff=0.01,
            ),
            within=20,
        )

    assert isinstance(error, DownloadError)
    assert f"127.0.0.1:{hub.port}" in str(error) and f"127.0.0.1:{second.port}" in str(error)
    assert elapsed < 2.0, elapsed  # was 2 mirrors x 5 attempts x --timeout


def _sigint_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_a_download_at_once_and_keeps_the_partial(
    hub: FakeHub, tmp_path: Path, signum: int, code: int
) -> None:
    hub.add_hf_repo("org/big", files={"model.safetensors": os.urandom(4_000_000)})
    hub.throttle(250_000)  # 16 s for the file
    folder = tmp_path / "projects" / "interrupted"
    folder.mkdir(parents=True)
    (folder / "project.yaml").write_text(
        'name: interrupted\npython_version: "3.11"\nmodels:\n  - source: huggingface\n    repo_id: org/big\n'
    )
    root = tmp_path / "volume"
    root.mkdir()
    command = [sys.executable, "-m", "volume_cli", "models", "download", "--project", "interrupted"]
    command += ["--root", str(root), "--projects-dir", str(folder.parent), "--hf-endpoint", hub.url]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        # As in a terminal: a test run started in the background (`cmd &`) inherits an ignored SIGINT,
        # and Python then never turns Ctrl-C into KeyboardInterrupt.
        preexec_fn=_sigint_as_in_a_terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        partials: list[Path] = []
        while not any(path.stat().st_size > 100_000 for path in partials):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
            partials = list(root.rglob("*.incomplete"))

        process.send_signal(signum)
        started = time.monotonic()
        _, err = process.communicate(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == code, (process.returncode, err)
    assert elapsed < 2.0, elapsed
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted"), err
    assert partials[0].is_file() and partials[0].stat().st_size > 100_000  # kept for the resume
    assert not list(root.rglob("*.lock")), "the model lock must be released"


class _EndlessListing(BaseHTTPRequestHandler):
    """A hostile mirror: siblings without sizes (forcing the tree listing), whose pages link to themselves."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if "/revision/" in self.path:
            body = json.dumps({"sha": "a" * 40, "siblings": [{"rfilename": "model.bin"}]}).encode()
            link = None
        else:
            body = json.dumps([{"type": "file", "path": "model.bin", "size": 1, "oid": "b" * 40}]).encode()
            link = f'<http://{self.headers["Host"]}{self.path}>; rel="next"'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if link:
            self.send_header("Link", link)
        self.end_headers()
        self.wfile.write(body)


def test_a_listing_whose_pages_never_end_fails_over(layout: VolumeLayout, make_project: ProjectMaker) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EndlessListing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        project = make_project([{"source": "huggingface", "repo_id": "org/endless"}])

        _, error, _ = bounded(
            lambda: models.download(layout=layout, project=project, hf_endpoints=[url], timeout=2.0, retries=0),
            within=15,
        )
    finally:
        server.shutdown()
        server.server_close()

    assert isinstance(error, DownloadError) and "listing" in str(error) and url in str(error), error
