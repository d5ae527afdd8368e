"""Store entries carry unchecked-hash bytecode: valid whatever the files' mtimes, never rewritten by a worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deps.helpers import PY
from tests.helpers import Projects
from tests.wheelfactory import IndexServer
from volume_cli.deps import install
from volume_cli.deps.bytecode import compile_bytecode
from volume_cli.deps.python import find_interpreter
from volume_cli.deps.uvtool import uv_binary
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

UNCHECKED_HASH_FLAGS = 0b01  # PEP 552: bit 0 hash-based, bit 1 check_source


def _flags(pyc: Path) -> int:
    return int.from_bytes(pyc.read_bytes()[4:8], "little")


@pytest.fixture
def gamma_entry(layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path) -> Path:
    if find_interpreter(PY, uv_binary()) is None:
        pytest.skip(f"no Python {PY} interpreter to compile with")
    project = projects.make("demo", {"m": {"packages": ["gamma"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=NullProgress())
    (entry,) = [path for path in layout.store_dir.iterdir() if path.name.startswith("gamma-")]
    return entry


def test_store_bytecode_is_unchecked_hash(gamma_entry: Path) -> None:
    pycs = list(gamma_entry.rglob("*.pyc"))
    assert pycs, "no bytecode was compiled"
    assert {_flags(pyc) for pyc in pycs} == {UNCHECKED_HASH_FLAGS}


@pytest.mark.parametrize("dont_write", [True, False])
def test_a_changed_mtime_still_imports_the_stored_bytecode_and_writes_nothing(
    gamma_entry: Path, dont_write: bool
) -> None:
    source = gamma_entry / "gamma.py"
    (pyc,) = (gamma_entry / "__pycache__").glob("gamma.*.pyc")
    before = {path.name: path.stat().st_mtime_ns for path in (gamma_entry / "__pycache__").iterdir()}
    # A copy that did not keep mtimes (an S3 pull): the source now looks newer than its bytecode.
    later = source.stat().st_mtime + 3600
    os.utime(source, (later, later))
    # Same size, other bytes: only a recompile from source could see "changed".
    source.write_text(source.read_text().replace("gamma", "GAMMA"))
    flags = ["-B"] if dont_write else []
    code = f"import sys; sys.path.insert(0, {str(gamma_entry)!r}); import gamma; print(gamma.VALUE)"
    done = subprocess.run(
        [sys.executable, "-I", *flags, "-c", code],
        cwd=gamma_entry,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"]},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "gamma", "the source was compiled again instead of using the stored pyc"
    after = {path.name: path.stat().st_mtime_ns for path in (gamma_entry / "__pycache__").iterdir()}
    assert after == before and _flags(pyc) == UNCHECKED_HASH_FLAGS


def test_compile_bytecode_tolerates_a_file_that_does_not_compile(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text("X = 1\n")
    (tmp_path / "py2.py").write_text("print 'old'\n")  # a wheel's Python 2 test file: uv skips it too
    compile_bytecode(tmp_path, interpreter=Path(sys.executable))
    (good,) = (tmp_path / "__pycache__").glob("good.*.pyc")
    assert _flags(good) == UNCHECKED_HASH_FLAGS
    assert not list((tmp_path / "__pycache__").glob("py2.*.pyc"))
