"""A single file from a plain URL into ``models/<dest>``.

The partial download is ``.volume-cli-staging/<key>.part`` on the volume
(resumed with ``Range``); it is renamed to the destination only after its
sha256 matched the configured one (or, without one, was computed for the
manifest). A wrong checksum leaves nothing at the destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from volume_cli.config.model_sources import ModelSpec, UrlModel
from volume_cli.errors import ModelError
from volume_cli.fsguard import check_inside
from volume_cli.models.endpoints import EndpointPool
from volume_cli.models.http import HttpClient
from volume_cli.models.manifest import ModelManifest, safe_key, spec_hash
from volume_cli.models.sources import FileJob, Listing, RemoteFile, SourceContext
from volume_cli.models.staging import staging_dir
from volume_cli.models.tokens import auth_headers
from volume_cli.redact import strip_credentials


def _as_url(spec: ModelSpec) -> UrlModel:
    if not isinstance(spec, UrlModel):
        raise TypeError(f"not a URL model: {spec.key}")
    return spec


def url_origin(url: str) -> str:
    """Scheme and host, without any ``user:pass@``: it names the endpoint in messages and the manifest."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class UrlSource:
    def __init__(self, context: SourceContext) -> None:
        self.context = context

    def auth_token(self) -> str | None:
        return None  # arbitrary hosts never get a hub token; see token_for

    def token_for(self, spec: UrlModel) -> str | None:
        """The token the model's ``token_env`` names, read from the environment at run time, never stored."""
        if not spec.token_env:
            return None
        value = self.context.env.get(spec.token_env, "").strip()
        if not value:
            raise ModelError(
                f"{spec.key}: the environment variable {spec.token_env} (token_env) is not set",
                hint=f"export {spec.token_env}=... before running volume-cli",
            )
        return value

    def headers_for(self, spec: UrlModel, url: str) -> dict[str, str]:
        return auth_headers("url", url_origin(spec.url), url, self.token_for(spec))

    def destination(self, spec: UrlModel) -> Path:
        models = self.context.layout.models_dir
        return check_inside(models / spec.dest, models)

    def list_remote(self, spec: ModelSpec, *, pool: EndpointPool, http: HttpClient) -> Listing:
        url_spec = _as_url(spec)
        headers = self.headers_for(url_spec, url_spec.url)
        size, endpoint = pool.call(lambda _origin: http.head_size(url_spec.url, headers=headers))
        name = PurePosixPath(url_spec.dest).name
        return Listing(None, (RemoteFile(path=name, size=size, sha256=url_spec.sha256),), endpoint)

    def prepare(self, spec: ModelSpec, previous: ModelManifest | None) -> None:
        return None

    def publish(self, spec: ModelSpec, manifest: ModelManifest, previous: ModelManifest | None) -> None:
        return None  # the file was put in place with one rename in finalize

    def file_jobs(self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None) -> list[FileJob]:
        url_spec = _as_url(spec)
        entry = listing.files[0]
        return [
            FileJob(
                file=entry,
                final=self.destination(url_spec),
                partial=check_inside(
                    staging_dir(self.context.layout) / f"{safe_key(url_spec.key)}.part", self.context.layout.models_dir
                ),
                url_for=lambda _origin: url_spec.url,
                present=False,  # a URL model is only planned when its file is missing or damaged
                headers=self.headers_for(url_spec, url_spec.url),
            )
        ]

    def finalize(
        self, spec: ModelSpec, listing: Listing, previous: ModelManifest | None, fetched_sha256: Mapping[str, str]
    ) -> ModelManifest:
        url_spec = _as_url(spec)
        destination = self.destination(url_spec)
        entry = listing.files[0]
        size = destination.stat().st_size
        layout = self.context.layout
        return ModelManifest(
            key=url_spec.key,
            source="url",
            model_id=strip_credentials(url_spec.url),  # the volume is shared: no password or token on it
            spec_hash=spec_hash(url_spec),
            target=layout.relative(destination),
            files_root=layout.relative(destination.parent),
            files=[entry.as_manifest(size=size, sha256=fetched_sha256.get(entry.path))],
            total_size=size,
            endpoint=listing.endpoint,
            downloaded_at=self.context.now,
        )
