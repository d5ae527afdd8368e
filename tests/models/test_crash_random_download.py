"""SIGKILL a model download at random moments; every outcome must be consistent.

Each kill point: a model at revision 1 on the volume (or nothing, for a first
download), the hub moved to revision 2, a ``download --refresh`` forked and
killed either after a random delay or at a random file-system step (rename,
link, unlink, mkdir: the commit steps a timer rarely hits). Consistent means:

- a reader (HF: ``refs/main`` then its snapshot; ModelScope: every release's
  folder) sees the whole old revision, the whole new one, or (first download
  only) nothing;
- no partial file is ever at a final path: every blob / revision file holds
  the full bytes of one revision;
- a rerun converges to the new revision, resumes each partial it finds with a
  ``Range`` request, and the run after it is an offline no-op.

The default run tries a handful of points per source; ``VOLUME_CLI_SLOW_TESTS=1``
tries 60 per source and prints the counts.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker, range_headers
from volume_cli import models
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest
from volume_cli.models.staging import staging_dir

SLOW = os.environ.get("VOLUME_CLI_SLOW_TESTS") == "1"
POINTS = 60 if SLOW else 5
WEIGHT = 300_000
_FS_STEPS = ("replace", "rename", "symlink", "link", "unlink", "mkdir", "rmdir")


def _files(number: int, *, hf: bool) -> dict[str, bytes]:
    tag = str(number).encode()
    weights = "model.safetensors" if hf else "pytorch_model.bin"
    return {
        "config.json": b'{"rev": ' + tag + b"}",
        weights: tag * WEIGHT,
        "sub/vocab.txt": b"vocab " + tag * 100,
    }


@dataclass
class Scenario:
    source: str  # "huggingface" or "modelscope"
    repo: str
    fresh: bool  # nothing on the volume before the killed run

    @property
    def spec(self) -> dict[str, Any]:
        if self.source == "huggingface":
            return {"source": "huggingface", "repo_id": self.repo}
        return {"source": "modelscope", "model_id": self.repo}

    @property
    def key(self) -> str:
        return f"huggingface/model/{self.repo}" if self.source == "huggingface" else f"modelscope/{self.repo}"

    def revisions(self) -> dict[int, dict[str, bytes]]:
        return {1: _files(1, hf=self.source == "huggingface"), 2: _files(2, hf=self.source == "huggingface")}


def _download(layout: VolumeLayout, project: Any, hub: FakeHub, **kwargs: Any) -> models.DownloadResult:
    endpoints = {"hf_endpoints": [hub.url], "modelscope_endpoints": [hub.url]}
    return models.download(layout=layout, project=project, **endpoints, **{**FAST, **kwargs})


# -- the killed run -----------------------------------------------------------------------------
def _kill_self_at_step(step: int) -> None:
    """In the child: count file-system steps and SIGKILL ourselves at number ``step``."""
    counter = [0]

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            counter[0] += 1
            if counter[0] == step:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        return counted

    for name in _FS_STEPS:
        setattr(os, name, wrap(getattr(os, name)))


def _killed_run(run: Callable[[], object], *, delay: float | None, step: int | None) -> str:
    """Fork ``run``; kill it after ``delay`` seconds or at file-system step ``step``. How it ended."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            if step is not None:
                _kill_self_at_step(step)
            run()
        except BaseException:
            code = 3
        os._exit(code)
    deadline = time.monotonic() + (delay if delay is not None else 60.0)  # a hung child is killed too
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "killed" if delay is not None else "hung"
        time.sleep(0.002)
    if os.WIFSIGNALED(status):
        return "killed"
    return "finished" if os.WEXITSTATUS(status) == 0 else "failed"


# -- what a reader sees -------------------------------------------------------------------------
def _read_all(folder: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    return {path: (folder / path).read_bytes() for path in files}


def _which(seen: dict[str, bytes], revisions: dict[int, dict[str, bytes]]) -> int | None:
    return next((number for number, files in revisions.items() if seen == files), None)


def _hf_view(layout: VolumeLayout, scenario: Scenario, commits: dict[str, int]) -> str:
    folder = layout.hf_hub_cache / f"models--{scenario.repo.replace('/', '--')}"
    ref = folder / "refs" / "main"
    if not ref.exists():
        return "none" if scenario.fresh else "inconsistent: refs/main vanished"
    commit = ref.read_text().strip()
    number = commits.get(commit)
    if number is None:
        return f"inconsistent: refs/main names an unknown commit {commit}"
    try:
        seen = _read_all(folder / "snapshots" / commit, scenario.revisions()[number])
    except OSError as exc:
        return f"inconsistent: {exc}"
    return f"rev{number}" if seen == scenario.revisions()[number] else "inconsistent: snapshot content"


def _ms_folders(layout: VolumeLayout, repo: str) -> list[Path]:
    owner, name = repo.split("/")
    cache = layout.modelscope_cache
    masked = name.replace(".", "___")
    return [cache / "models" / owner / masked, cache / "hub" / owner / masked, cache / owner / name]


def _ms_view(layout: VolumeLayout, scenario: Scenario) -> str:
    revisions = scenario.revisions()
    views = set()
    for folder in _ms_folders(layout, scenario.repo):
        fd = None
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            seen = {path: _read_at(fd, path) for path in revisions[1]}
        except FileNotFoundError:
            views.add("none")
            continue
        except OSError as exc:
            return f"inconsistent: {folder}: {exc}"
        finally:
            if fd is not None:
                os.close(fd)
        number = _which(seen, revisions)
        views.add(f"rev{number}" if number else f"inconsistent: {folder} mixes revisions")
    if "none" in views and not scenario.fresh:
        return "inconsistent: a release's folder vanished"
    if len(views) > 1 and "none" not in views:
        return f"inconsistent: releases see different revisions {sorted(views)}"
    return max(views)


def _read_at(dir_fd: int, path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _partials_in_place(layout: VolumeLayout, scenario: Scenario) -> list[str]:
    """Files at final paths whose bytes are not the full content of one revision."""
    revisions = scenario.revisions()
    contents = {data for files in revisions.values() for data in files.values()}
    bad = []
    if scenario.source == "huggingface":
        folder = layout.hf_hub_cache / f"models--{scenario.repo.replace('/', '--')}"
        finals = [path for path in (folder / "blobs").glob("*") if not path.name.endswith(".incomplete")]
        for path in finals:
            if path.read_bytes() not in contents:
                bad.append(str(path))
        return bad
    owner, name = scenario.repo.split("/")
    store = layout.modelscope_cache / ".volume-cli" / owner / name
    for revision in store.glob("rev-*"):
        for path in revision.rglob("*"):
            relative = path.relative_to(revision).as_posix()
            hidden = path.name.startswith(".")  # the client index files, rewritten atomically
            if (
                path.is_file()
                and not hidden
                and all(files.get(relative) != path.read_bytes() for files in revisions.values())
            ):
                bad.append(str(path))
    return bad


def _partial_sizes(layout: VolumeLayout, scenario: Scenario) -> list[int]:
    """Sizes of the partial downloads a rerun should resume (neither empty nor already complete)."""
    if scenario.source == "huggingface":
        folder = layout.hf_hub_cache / f"models--{scenario.repo.replace('/', '--')}" / "blobs"
        found = list(folder.glob("*.incomplete"))
    else:
        found = list(staging_dir(layout).rglob("*.part"))
    full = {len(data) for files in scenario.revisions().values() for data in files.values()}
    return sorted(size for size in (path.stat().st_size for path in found) if size and size not in full)


# -- one kill point -----------------------------------------------------------------------------
def _one_point(
    hub: FakeHub, base: Path, make_project: ProjectMaker, scenario: Scenario, rng: random.Random, full: float
) -> tuple[str, str, list[str], int]:
    """Returns (how the killed run ended, what a reader saw, problems, partials the rerun had to resume)."""
    root = base / scenario.repo.replace("/", "_")
    root.mkdir(parents=True)
    layout = VolumeLayout(root)
    revisions = scenario.revisions()
    project = make_project([scenario.spec], name=scenario.repo.split("/")[1].replace(".", "-"))
    add = hub.add_hf_repo if scenario.source == "huggingface" else hub.add_ms_repo
    commits = {add(scenario.repo, files=revisions[1]): 1}
    if not scenario.fresh:
        _download(layout, project, hub)
        commits[add(scenario.repo, files=revisions[2])] = 2
    target = 1 if scenario.fresh else 2

    by_step = rng.random() < 0.5
    hub.throttle(WEIGHT * 4)  # the weights take ~0.25 s: kills land during transfers too
    try:
        ended = _killed_run(
            lambda: _download(layout, project, hub, refresh=not scenario.fresh),
            delay=None if by_step else rng.uniform(0.0, full),
            step=rng.randint(1, 60) if by_step else None,
        )
    finally:
        hub.throttle(None)
    view = _hf_view(layout, scenario, commits) if scenario.source == "huggingface" else _ms_view(layout, scenario)
    problems = [view] if view.startswith("inconsistent") else []
    if ended in ("hung", "failed"):
        problems.append(f"the run before the kill {ended}")
    problems += [f"partial in place: {path}" for path in _partials_in_place(layout, scenario)]

    partials = _partial_sizes(layout, scenario)
    hub.clear_requests()
    try:
        _download(layout, project, hub, refresh=not scenario.fresh)
    except models.ModelDownloadError as exc:
        problems.append(f"rerun failed: {exc}")
    after = _hf_view(layout, scenario, commits) if scenario.source == "huggingface" else _ms_view(layout, scenario)
    if after != f"rev{target}":
        problems.append(f"rerun did not converge: a reader sees {after}")
    ranges = set(range_headers(hub, ""))
    problems += [f"partial of {size} bytes not resumed" for size in partials if f"bytes={size}-" not in ranges]
    manifest = read_model_manifest(layout, scenario.key)
    if manifest is None or commits.get(manifest.resolved_commit or "") != target:
        problems.append("the manifest does not name the new revision")
    hub.clear_requests()
    again = _download(layout, project, hub)
    if again.models[0].action != "present" or again.network_used:
        problems.append(f"the run after is not an offline no-op: {again.models[0].action}")
    return ended, view.split(":")[0], problems, len(partials)


def _calibrate(hub: FakeHub, base: Path, make_project: ProjectMaker, source: str) -> float:
    """How long an unkilled, throttled refresh takes here: kill delays are drawn up to that."""
    scenario = Scenario(source, f"calib/{source}", fresh=False)
    root = base / "calibration"
    root.mkdir(parents=True)
    layout = VolumeLayout(root)
    project = make_project([scenario.spec], name=f"calib-{source}")
    add = hub.add_hf_repo if source == "huggingface" else hub.add_ms_repo
    add(scenario.repo, files=scenario.revisions()[1])
    _download(layout, project, hub)
    add(scenario.repo, files=scenario.revisions()[2])
    hub.throttle(WEIGHT * 4)
    started = time.monotonic()
    try:
        ended = _killed_run(lambda: _download(layout, project, hub, refresh=True), delay=None, step=None)
    finally:
        hub.throttle(None)
    assert ended == "finished"
    return (time.monotonic() - started) * 1.2


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_random_kills_during_model_downloads_leave_consistent_states(
    hub: FakeHub, tmp_path: Path, make_project: ProjectMaker, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("VOLUME_CLI_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    full = _calibrate(hub, tmp_path, make_project, source)
    ends: Counter[str] = Counter()
    views: Counter[str] = Counter()
    inconsistent: list[str] = []
    resumed = 0
    for point in range(POINTS):
        scenario = Scenario(source, f"crash/m{point}.x", fresh=point % 3 == 2)
        ended, view, problems, partials = _one_point(hub, tmp_path / f"p{point}", make_project, scenario, rng, full)
        resumed += partials
        ends[ended] += 1
        views[view] += 1
        inconsistent += [f"point {point} ({scenario.fresh=}, {ended}): {problem}" for problem in problems]
    with capsys.disabled():
        print(
            f"\n{source}: {POINTS} kill points (seed {seed}): killed runs {dict(ends)}, "
            f"reader saw {dict(views)}, {resumed} partial(s) resumed with Range, "
            f"{len(inconsistent)} inconsistent outcome(s)"
        )
    assert not inconsistent, "\n".join(inconsistent)


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_a_refresh_killed_between_the_switch_and_the_manifest_converges_forward(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, source: str
) -> None:
    """The state a kill leaves between the adapter's switch and the manifest, rebuilt by hand."""
    scenario = Scenario(source, "crash/between", fresh=False)
    project = make_project([scenario.spec])
    add = hub.add_hf_repo if source == "huggingface" else hub.add_ms_repo
    commits = {add(scenario.repo, files=scenario.revisions()[1]): 1}
    _download(layout, project, hub)
    old = read_model_manifest(layout, scenario.key)
    commits[add(scenario.repo, files=scenario.revisions()[2])] = 2
    _download(layout, project, hub, refresh=True)
    assert old is not None
    if source == "huggingface":  # the manifest is written first, then refs/main is switched
        refs = layout.hf_hub_cache / f"models--{scenario.repo.replace('/', '--')}" / "refs" / "main"
        refs.write_text(old.resolved_commit or "")
        assert _hf_view(layout, scenario, commits) == "rev1"
    else:  # ModelScope writes the manifest first, then switches ``current``
        current = layout.modelscope_cache / ".volume-cli" / "crash" / "between" / "current"
        current.unlink()
        current.symlink_to(PurePosixPath(old.files_root).name)
        assert _ms_view(layout, scenario) == "rev1"

    _download(layout, project, hub, refresh=True)

    view = _hf_view(layout, scenario, commits) if source == "huggingface" else _ms_view(layout, scenario)
    assert view == "rev2"
    manifest = read_model_manifest(layout, scenario.key)
    assert manifest is not None and commits[manifest.resolved_commit or ""] == 2
