"""Mirrors with failover: endpoints are tried in order; one that fails is dropped for the run."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from volume_cli.errors import DownloadError
from volume_cli.models.http import EndpointFailure
from volume_cli.progress import Progress

# The clients' own defaults (huggingface_hub.constants, modelscope.hub.constants; a test keeps them equal),
# written out so that choosing an endpoint never imports a hub client.
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
MODELSCOPE_DEFAULT_ENDPOINT = "https://www.modelscope.cn"
# What modelscope < 1.38 reads instead of MODELSCOPE_ENDPOINT (a host name, no scheme); newer ones still accept it.
MODELSCOPE_DOMAIN_ENV = "MODELSCOPE_DOMAIN"

T = TypeVar("T")


def resolve_endpoints(
    explicit: Sequence[str] | None, *, env: Mapping[str, str], env_var: str, default: str
) -> list[str]:
    """The explicit list (CLI option / config) wins; else the environment variable; else the public hub."""
    candidates = list(explicit or [])
    if not candidates and env.get(env_var, "").strip():
        candidates = [part for part in env[env_var].replace(",", " ").split() if part]
    domain = env.get(MODELSCOPE_DOMAIN_ENV, "").strip()
    if not candidates and default == MODELSCOPE_DEFAULT_ENDPOINT and domain:
        candidates = [domain if domain.startswith(("http://", "https://")) else f"https://{domain}"]
    if not candidates:
        candidates = [default]
    unique: list[str] = []
    for endpoint in candidates:
        cleaned = endpoint.strip().rstrip("/")
        if cleaned and cleaned not in unique:
            unique.append(cleaned)
    return unique


class EndpointPool:
    """Shared by every model of one source in a run, across threads."""

    def __init__(self, source: str, endpoints: Sequence[str], progress: Progress) -> None:
        if not endpoints:
            raise ValueError("an endpoint pool needs at least one endpoint")
        self.source = source
        self.endpoints = list(endpoints)
        self._progress = progress
        self._dead: dict[str, str] = {}
        self._lock = threading.Lock()

    def live(self) -> list[str]:
        with self._lock:
            return [endpoint for endpoint in self.endpoints if endpoint not in self._dead]

    def mark_dead(self, endpoint: str, reason: str) -> None:
        with self._lock:
            if endpoint in self._dead:
                return
            self._dead[endpoint] = reason
            remaining = [candidate for candidate in self.endpoints if candidate not in self._dead]
        if remaining:  # the last one's failure is in the error raised next: say it once
            self._progress.warn(f"{self.source} endpoint {endpoint} failed: {reason}; trying {remaining[0]}")

    def call(self, action: Callable[[str], T]) -> tuple[T, str]:
        """Run ``action(endpoint)`` on the first live endpoint that succeeds; returns (result, endpoint)."""
        while True:
            live = self.live()
            if not live:
                with self._lock:
                    reasons = "; ".join(f"{endpoint}: {reason}" for endpoint, reason in self._dead.items())
                raise DownloadError(
                    f"every {self.source} endpoint failed ({reasons})",
                    hint="check the network or pass another mirror (--hf-endpoint / --modelscope-endpoint)",
                )
            endpoint = live[0]
            try:
                return action(endpoint), endpoint
            except EndpointFailure as exc:
                self.mark_dead(endpoint, exc.reason)
