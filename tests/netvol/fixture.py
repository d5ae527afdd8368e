"""The ``netvol`` pytest fixture: a simulated network volume mounted over a tmp folder.

Import it into a test module (``from tests.netvol.fixture import netvol, netvol_options``);
override ``netvol_options`` in the module to change latency or the kernel cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netvol.mount import NetVol, mounted, unavailable_reason


@pytest.fixture
def netvol_options() -> dict[str, Any]:
    """Keyword arguments for ``mounted``: 1 ms per operation and a 1 s kernel cache (like mfsmount)."""
    return {"latency_ms": 1.0, "cache_seconds": 1.0}


@pytest.fixture
def netvol(tmp_path: Path, netvol_options: dict[str, Any]) -> Iterator[NetVol]:
    """A mounted simulated volume; unmounted (lazily if busy) even when the test fails."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"simulated network volume unavailable: {reason}")
    with mounted(tmp_path / "netvol-backing", tmp_path / "netvol", **netvol_options) as volume:
        yield volume
