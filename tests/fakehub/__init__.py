"""A local, dependency-free fake of the HuggingFace Hub and ModelScope HTTP APIs.

Real ``huggingface_hub`` and ``modelscope`` clients can download from it; see
``server.py`` for the API and ``NOTES.md`` for the protocol/layout notes.
"""

from .server import FakeHub, git_blob_sha1

__all__ = ["FakeHub", "git_blob_sha1"]
