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
import py_compile
import sys
from pathlib import Path

from volume_cli.runner import run

# Up to this many sources the running interpreter compiles them itself when it is the target's X.Y
# (same magic number): starting a second Python and its pool cost more than compiling. Measured on the
# simulated volume's one-leaf change (tqdm, 34 sources): 0.13 s through a second Python, 0.03 s here.
IN_PROCESS_MAX_SOURCES = 300

# Quiet and forgiving like uv's --compile-bytecode: a test file in Python 2 syntax must not fail the install.
# Files go to the workers in a few chunks, where compileall hands them over one by one. Measured on the
# 44-wheel set (8.2k .py files, 2 busy cores): uv's install plus this 24.7 s and 24.4 s, uv's own
# --compile-bytecode 24.3 s twice; compileall -j 2 took a little longer than this.
_COMPILE = """
import multiprocessing, os, py_compile, sys

def compile_chunk(paths):
    for path in paths:
        try:
            py_compile.compile(path, doraise=True, quiet=2,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        except Exception:
            pass

paths = [os.path.join(folder, name) for folder, _, names in os.walk(sys.argv[1])
         for name in names if name.endswith(".py")]
workers = int(sys.argv[2])
chunks = [paths[start::workers * 8] for start in range(workers * 8)]
with multiprocessing.get_context("fork").Pool(workers) as pool:
    pool.map(compile_chunk, chunks, chunksize=1)
"""


def compile_bytecode(
    target: Path, *, interpreter: Path, python_version: str | None = None, log_dir: Path | None = None
) -> None:
    """Compile every ``.py`` under ``target`` to unchecked-hash pycs with ``interpreter``.

    A few sources of the running interpreter's own X.Y (``python_version``) are compiled here instead.
    """
    if python_version == f"{sys.version_info.major}.{sys.version_info.minor}" and sys.implementation.name == "cpython":
        sources = [
            os.path.join(folder, name) for folder, _, names in os.walk(target) for name in names if name.endswith(".py")
        ]
        if len(sources) <= IN_PROCESS_MAX_SOURCES:
            for source in sources:
                _compile_here(source)
            return
    workers = max(2, os.cpu_count() or 1)
    # -I: the user's PYTHON* variables and site-packages play no part in compiling.
    run([str(interpreter), "-I", "-c", _COMPILE, str(target), str(workers)], label="compile-bytecode", log_dir=log_dir)


def _compile_here(source: str) -> None:
    try:
        # optimize=0: a volume-cli run with -O must still write the plain pyc every worker loads.
        py_compile.compile(
            source, doraise=True, quiet=2, optimize=0, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
        )
    except Exception:  # like the workers: a test file in Python 2 syntax must not fail the install
        pass
