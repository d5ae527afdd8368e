"""Issue 11: every subprocess goes through volume_cli/runner.py, "the one place"."""

from __future__ import annotations

import ast
import sys
import threading
import time
from pathlib import Path

import pytest

import volume_cli
from volume_cli.deps.python import _interpreter_full_version, _uv_find
from volume_cli.deps.uvtool import uv_binary
from volume_cli.errors import SubprocessError
from volume_cli.runner import Cancel, run

PACKAGE = Path(volume_cli.__file__).parent


def _imports_subprocess(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(alias.name == "subprocess" for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "subprocess":
            return True
    return False


def test_only_the_runner_imports_subprocess() -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py")) if _imports_subprocess(p)]
    assert offenders == ["runner.py"]


def test_a_command_past_its_timeout_is_stopped_and_named() -> None:
    started = time.monotonic()
    with pytest.raises(SubprocessError, match=r"timed out after 0\.5s"):
        run([sys.executable, "-c", "import time; time.sleep(30)"], label="sleeper", timeout=0.5)
    assert time.monotonic() - started < 10


def test_a_cancelled_command_is_stopped_from_another_thread_and_named() -> None:
    cancel = Cancel()
    outcome: list[BaseException] = []

    def sleeper() -> None:
        try:
            run([sys.executable, "-c", "import time; time.sleep(30)"], label="sleeper", cancel=cancel)
        except SubprocessError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=sleeper)
    started = time.monotonic()
    thread.start()
    time.sleep(0.5)
    cancel.cancel()
    thread.join(timeout=20)
    assert not thread.is_alive() and time.monotonic() - started < 10
    assert len(outcome) == 1 and "sleeper cancelled" in str(outcome[0])


def test_a_command_cancelled_before_it_starts_does_not_run(tmp_path: Path) -> None:
    cancel = Cancel()
    cancel.cancel()
    marker = tmp_path / "ran"
    script = f"import time, pathlib; time.sleep(2); pathlib.Path({str(marker)!r}).touch()"
    with pytest.raises(SubprocessError, match="cancelled"):
        run([sys.executable, "-c", script], label="late", cancel=cancel)
    time.sleep(2.5)
    assert not marker.exists()


def test_stderr_can_be_left_out_of_a_value_read_from_stdout() -> None:
    script = "import sys; print('warning: noise', file=sys.stderr); print('value')"
    assert run([sys.executable, "-c", script], label="value", keep_stderr=False).lines == ("value",)
    assert "warning: noise" in run([sys.executable, "-c", script], label="both").lines


def test_interpreter_lookups_still_answer_through_the_runner() -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = _uv_find(version, uv_binary())
    assert found is not None and found.is_file()
    full = _interpreter_full_version(str(found))
    assert full is not None and full.startswith(version + ".")
    assert _interpreter_full_version(str(PACKAGE / "no-such-python")) is None
    assert _uv_find("2.1", uv_binary()) is None
