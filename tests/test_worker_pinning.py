"""Whatever ``volume-cli env`` prints pins one dependency generation per process.

Two generations carry modules ``a`` and ``b`` with a version constant; a
thread switches ``pyX.Y/<project>`` between them as fast as it can while
fresh processes, configured only by the printed variables, import ``a``,
wait, then import ``b``. A process that sees two versions has mixed
generations.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import write_installed_state
from volume_cli.consumer_env import ConsumerEnv, consumer_env, render_env
from volume_cli.deps.forest import generation_dir, switch_current
from volume_cli.layout import VolumeLayout
from volume_cli.runtime import activate

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PROJECT = "pinned"
SLOW = os.environ.get("VOLUME_CLI_SLOW_TESTS") == "1"
STARTS = 400 if SLOW else 48

CHILD = "import a, time; time.sleep(0.03); import b; print(a.V + b.V)"


def _generation(layout: VolumeLayout, name: str, version: str) -> None:
    folder = generation_dir(layout, PROJECT, PY, name)
    folder.mkdir(parents=True)
    for module in ("a", "b"):
        (folder / f"{module}.py").write_text(f"V = {version!r}\n")


@pytest.fixture
def two_generations(layout: VolumeLayout) -> VolumeLayout:
    _generation(layout, "gen-a", "A")
    _generation(layout, "gen-b", "B")
    switch_current(layout, PROJECT, PY, "gen-a")
    return layout


class Switcher:
    """Flips the project's link between the two generations until stopped."""

    def __init__(self, layout: VolumeLayout) -> None:
        self.layout = layout
        self.stop = threading.Event()
        self.switches = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            switch_current(self.layout, PROJECT, PY, "gen-b" if self.switches % 2 == 0 else "gen-a")
            self.switches += 1
            self.stop.wait(0.002)


@pytest.fixture
def switching(two_generations: VolumeLayout) -> Iterator[Switcher]:
    switcher = Switcher(two_generations)
    switcher.thread.start()
    yield switcher
    switcher.stop.set()
    switcher.thread.join()


def _base_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONSTARTUP")}


def _command(env: ConsumerEnv, style: str, code: str, folder: Path) -> tuple[list[str], dict[str, str]]:
    """A worker start configured only by what ``env`` printed in ``style``."""
    printed = render_env(env, style)  # type: ignore[arg-type]
    base = _base_environment()
    if style == "shell":
        script = folder / "env.sh"  # the same text every time: written once, never while a shell reads it
        if not script.exists():
            script.write_text(printed)
        line = f". {shlex.quote(str(script))} && exec {shlex.quote(sys.executable)} -c {shlex.quote(code)}"
        return ["bash", "-c", line], base
    variables = json.loads(printed) if style == "json" else dict(line.split("=", 1) for line in printed.splitlines())
    return [sys.executable, "-c", code], {**base, **variables}


def _start_many(env: ConsumerEnv, folder: Path, count: int, code: str = CHILD) -> list[str]:
    """Start ``count`` workers, a few at a time, in each of the env formats."""
    outputs: list[str] = []
    styles = ("shell", "dotenv", "json")
    batch = 4
    for first in range(0, count, batch):
        running = []
        for number in range(first, min(first + batch, count)):
            command, environment = _command(env, styles[number % len(styles)], code, folder)
            running.append(subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for process in running:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err.decode()
            outputs.append(out.decode().strip())
    return outputs


def test_env_output_pins_one_generation_per_process_while_generations_switch(
    switching: Switcher, tmp_path: Path
) -> None:
    env = consumer_env(layout=switching.layout, project=PROJECT, python_version=PY, mount=None)
    outputs = _start_many(env, tmp_path, STARTS)
    mixed = [output for output in outputs if output not in ("AA", "BB")]
    assert len(outputs) == STARTS and switching.switches > STARTS
    assert mixed == [], f"{len(mixed)} of {STARTS} starts mixed generations"
    assert {"AA", "BB"} <= set(outputs) or STARTS < 10  # both generations were really in play


def _run(command: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)


def _variables(layout: VolumeLayout) -> dict[str, str]:
    return consumer_env(layout=layout, project=PROJECT, python_version=PY, mount=None).variables


def test_the_image_sitecustomize_still_runs_after_the_boot(two_generations: VolumeLayout, tmp_path: Path) -> None:
    image = tmp_path / "image-site"
    image.mkdir()
    (image / "sitecustomize.py").write_text("import os\nos.environ['IMAGE_SITE'] = 'ran'\n")
    env = consumer_env(layout=two_generations, project=PROJECT, python_version=PY, mount=None)
    script = tmp_path / "env.sh"
    script.write_text(render_env(env, "shell"))
    code = "import os, sys, a; print(os.environ.get('IMAGE_SITE'), a.V, any('.boot' in p for p in sys.path))"
    line = f". {shlex.quote(str(script))} && exec {shlex.quote(sys.executable)} -c {shlex.quote(code)}"
    # the image's PYTHONPATH stays on the path, after the volume's
    done = _run(["bash", "-c", line], {**_base_environment(), "PYTHONPATH": str(image)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ran", "A", "False"]


def test_a_missing_generation_says_so_and_nothing_is_imported_from_the_link(
    layout: VolumeLayout, tmp_path: Path
) -> None:
    done = _run([sys.executable, "-c", "import a"], {**_base_environment(), **_variables(layout)})
    assert done.returncode == 1
    assert f"volume-cli deps install --project {PROJECT}" in done.stderr
    assert "ModuleNotFoundError" in done.stderr


def test_python_dash_s_and_dash_i_never_see_a_switchable_path(two_generations: VolumeLayout) -> None:
    environment = {**_base_environment(), **_variables(two_generations)}
    for flag in ("-S", "-I"):
        done = _run([sys.executable, flag, "-c", "import a"], environment)
        assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr, (flag, done.stderr)


def test_no_bytecode_lands_on_the_volume_even_without_pythondontwritebytecode(
    two_generations: VolumeLayout,
) -> None:
    variables = {key: value for key, value in _variables(two_generations).items() if key != "PYTHONDONTWRITEBYTECODE"}
    environment = {key: value for key, value in _base_environment().items() if key != "PYTHONDONTWRITEBYTECODE"}
    done = _run([sys.executable, "-c", "import a, b"], {**environment, **variables})
    assert done.returncode == 0, done.stderr
    written = [path for path in two_generations.root.rglob("*.pyc")]
    assert written == []


ACTIVATE_TWICE = """
import json, sys
from pathlib import Path
from volume_cli.deps.forest import switch_current
from volume_cli.layout import VolumeLayout
from volume_cli.runtime import activate
layout = VolumeLayout(Path(sys.argv[1]))
first = activate("pinned", layout.root)
import a
switch_current(layout, "pinned", sys.argv[2], "gen-b")
second = activate("pinned", layout.root)
import b
print(json.dumps([a.V, b.V, str(first.sys_path_entry) == str(second.sys_path_entry)]))
"""


def test_activate_keeps_the_generation_this_process_already_imports_from(two_generations: VolumeLayout) -> None:
    write_installed_state(two_generations, PROJECT)
    environment = {**_base_environment(), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # a second activate after a switch (a handler that activates per request)
    done = _run([sys.executable, "-c", ACTIVATE_TWICE, str(two_generations.root), PY], environment)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["A", "A", True]


def test_activate_after_the_boot_keeps_the_boot_generation(two_generations: VolumeLayout) -> None:
    write_installed_state(two_generations, PROJECT)
    variables = _variables(two_generations)
    repo = str(Path(__file__).resolve().parents[1])
    code = (
        "import sys, a\n"
        "from pathlib import Path\n"
        f"sys.path.append({repo!r})\n"
        "from volume_cli.deps.forest import switch_current\n"
        "from volume_cli.layout import VolumeLayout\n"
        "from volume_cli.runtime import activate\n"
        f"switch_current(VolumeLayout(Path({str(two_generations.root)!r})), 'pinned', {PY!r}, 'gen-b')\n"
        f"activate('pinned', {str(two_generations.root)!r})\n"
        "import b\n"
        "print(a.V + b.V, sum('.generations' in p for p in sys.path))\n"
    )
    done = _run([sys.executable, "-c", code], {**_base_environment(), **variables})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["AA", "1"]


def test_activate_in_process_pins_the_resolved_generation(
    two_generations: VolumeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_installed_state(two_generations, PROJECT)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", sys.dont_write_bytecode)
    monkeypatch.setattr(os, "environ", dict(os.environ))
    found = activate(PROJECT, two_generations.root)
    assert found.sys_path_entry == generation_dir(two_generations, PROJECT, PY, "gen-a").resolve()


def test_activate_never_puts_the_switchable_link_on_sys_path(
    two_generations: VolumeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_installed_state(two_generations, PROJECT)
    link = str(two_generations.deps_path(PROJECT, PY))
    monkeypatch.setattr(sys, "path", [link, *sys.path])  # PYTHONPATH=<the link>, as the README once said
    monkeypatch.setattr(sys, "dont_write_bytecode", sys.dont_write_bytecode)
    monkeypatch.setattr(os, "environ", dict(os.environ))
    entry = activate(PROJECT, two_generations.root).sys_path_entry
    assert entry == generation_dir(two_generations, PROJECT, PY, "gen-a").resolve()
    assert link not in sys.path and sys.path[0] == str(entry)


def test_env_on_a_read_only_volume_uses_the_boot_that_is_there_or_says_why_not(
    layout: VolumeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volume_cli import consumer_env as module
    from volume_cli.errors import RootError

    def refuse(target: Path, data: bytes, *, mode: int = 0o644) -> None:
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(module, "atomic_write_bytes", refuse)
    with pytest.raises(RootError, match="cannot write the worker boot folder"):
        consumer_env(layout=layout, project=PROJECT, python_version=PY, mount=None)
    older = module.boot_path(layout.root, PROJECT, PY) / "sitecustomize.py"
    older.parent.mkdir(parents=True)
    older.write_text("# written by an older volume-cli\n")
    printed = consumer_env(layout=layout, project=PROJECT, python_version=PY, mount=None)
    assert printed.variables["PYTHONPATH"] == str(older.parent)
