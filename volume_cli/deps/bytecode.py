"""Bytecode for staged distributions: compiled on local disk, hash-based, never checked again.

Store entries never change after they are published, so their ``.pyc``
files are compiled with ``unchecked-hash`` invalidation: the interpreter
loads them without comparing the source's mtime or hash. That saves a stat
per module on a worker's cold import, and the pycs stay valid through
copies that change mtimes (a pull from S3, a ``cp`` without ``-p``). They
are compiled in the local staging folder, by the target interpreter (the
magic number is its own), with several workers, before anything is
published.
"""

from __future__ import annotations

import os
from pathlib import Path

from volume_cli.runner import run

# Quiet and forgiving like uv's --compile-bytecode: a test file in Python 2 syntax must not fail the install.
_COMPILE = """
import compileall, py_compile, sys
compileall.compile_dir(
    sys.argv[1], quiet=2, workers=int(sys.argv[2]),
    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
)
"""


def compile_bytecode(target: Path, *, interpreter: Path, log_dir: Path | None = None) -> None:
    """Compile every ``.py`` under ``target`` to unchecked-hash pycs with ``interpreter``."""
    workers = max(2, os.cpu_count() or 1)
    # -I: the user's PYTHON* variables and site-packages play no part in compiling.
    run([str(interpreter), "-I", "-c", _COMPILE, str(target), str(workers)], label="compile-bytecode", log_dir=log_dir)
