"""``volume-cli remote add|list|rm|check``: the S3 endpoints a project can be pushed to."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from volume_cli.cli.options import JsonOption
from volume_cli.cli.render import emit, plain_table
from volume_cli.errors import UsageError
from volume_cli.redact import redact_url

if TYPE_CHECKING:
    from volume_cli.remote.check import CheckReport
    from volume_cli.remote.config import Remote

app = typer.Typer(help="S3 remotes (e.g. RunPod network volumes) a project can be pushed to.", no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="Remote name: letters, digits and _.")]


@dataclass(frozen=True)
class RemoteRow:
    name: str
    endpoint: str
    bucket: str
    region: str | None
    credentials: str  # where the key comes from, never the key


@app.command("add")
def add_command(
    name: NameArgument,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", metavar="URL", help="S3 endpoint URL.", show_default=False)
    ] = None,
    bucket: Annotated[
        str | None, typer.Option("--bucket", metavar="B", help="Bucket name.", show_default=False)
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", metavar="R", help="Signing region.", show_default=False)
    ] = None,
    runpod_volume: Annotated[
        str | None,
        typer.Option(
            "--runpod-volume", metavar="ID", help="RunPod network volume id (the bucket).", show_default=False
        ),
    ] = None,
    datacenter: Annotated[
        str | None,
        typer.Option(
            "--datacenter", metavar="DC", help="RunPod datacenter of the volume, e.g. EUR-IS-1.", show_default=False
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", metavar="NAME", help="AWS profile holding the key (~/.aws).", show_default=False),
    ] = None,
) -> None:
    """Record a remote (no secret is stored: keys come from the environment or --profile)."""
    from volume_cli.remote.config import add_remote, remotes_path, secret_env_names

    remote = _build(name, endpoint, bucket, region, runpod_volume, datacenter, profile)
    path = remotes_path(os.environ)
    add_remote(path, remote)
    access, secret = secret_env_names(remote.name)
    typer.echo(f"added remote {remote.name}: {redact_url(remote.endpoint)} bucket {remote.bucket} ({path})")
    if not profile:
        typer.echo(f"credentials: export {access}=... {secret}=...  (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    typer.echo(f"next: volume-cli remote check {remote.name}")


def _build(
    name: str,
    endpoint: str | None,
    bucket: str | None,
    region: str | None,
    runpod_volume: str | None,
    datacenter: str | None,
    profile: str | None,
) -> Remote:
    from pydantic import ValidationError

    from volume_cli.remote.config import Remote, runpod_remote

    try:
        if runpod_volume or datacenter:
            if endpoint or bucket or region:
                raise UsageError("--runpod-volume/--datacenter replace --endpoint, --bucket and --region")
            if not (runpod_volume and datacenter):
                raise UsageError("the RunPod shorthand needs both --runpod-volume ID and --datacenter DC")
            remote = runpod_remote(name, volume_id=runpod_volume, datacenter=datacenter)
            return remote.model_copy(update={"profile": profile}) if profile else remote
        if not (endpoint and bucket):
            raise UsageError(
                "a remote needs --endpoint URL and --bucket B (or --runpod-volume ID --datacenter DC)",
                hint="volume-cli remote add eu --runpod-volume abc123 --datacenter EUR-IS-1",
            )
        return Remote(name=name, endpoint=endpoint, bucket=bucket, region=region, profile=profile)
    except ValidationError as exc:
        raise UsageError(f"invalid remote: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    except ValueError as exc:  # the RunPod shorthand's own checks
        raise UsageError(f"invalid remote: {exc}") from None


@app.command("list")
def list_command(as_json: JsonOption = False) -> None:
    """Every recorded remote and where its key comes from (the key itself is never shown)."""
    from volume_cli.remote.config import load_remotes, remotes_path
    from volume_cli.remote.s3 import credential_source

    path = remotes_path(os.environ)
    rows = []
    for remote in load_remotes(path).remotes.values():
        source = credential_source(remote, os.environ)
        rows.append(
            RemoteRow(
                remote.name,
                redact_url(remote.endpoint),
                remote.bucket,
                remote.region,
                f"{source.kind}: {source.detail}",
            )
        )

    def human(console: Console) -> None:
        if not rows:
            console.print(f"no remotes in {path}; add one with: volume-cli remote add NAME --endpoint URL --bucket B")
            return
        table = plain_table()
        for column in ("name", "endpoint", "bucket", "region", "credentials"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(row.name, row.endpoint, row.bucket, row.region or "-", row.credentials)
        console.print(table)

    emit(rows, as_json=as_json, human=human)


@app.command("rm")
def rm_command(name: NameArgument) -> None:
    """Forget a remote (nothing on the remote itself is touched)."""
    from volume_cli.remote.config import remotes_path, remove_remote

    remove_remote(remotes_path(os.environ), name)
    typer.echo(f"removed remote {name}")


@app.command("check")
def check_command(
    name: NameArgument,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", min=0.1, help="Connect and read timeout per request.")
    ] = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Reachable, authorised, and what the remote really does: ETags, metadata, conditional writes, listing."""
    from volume_cli.remote.check import check_remote
    from volume_cli.remote.config import load_remotes, remotes_path

    path = remotes_path(os.environ)
    remote = load_remotes(path).remotes.get(name)
    if remote is None:
        from volume_cli.errors import RemoteConfigError

        raise RemoteConfigError(f"no remote named {name!r} in {path}", hint="volume-cli remote list")
    report = check_remote(remote, environ=os.environ, timeout=timeout)
    emit(report, as_json=as_json, human=lambda console: _render_check(console, report))


def _render_check(console: Console, report: CheckReport) -> None:
    console.print(
        f"remote {report.remote}: {redact_url(report.endpoint)} bucket {report.bucket} ({report.credentials})",
        markup=False,
    )
    table = plain_table()
    for column in ("capability", "result", "detail"):
        table.add_column(column, overflow="fold")
    for item in report.capabilities:
        result = "yes" if item.ok else "unknown" if item.ok is None else "no"
        table.add_row(item.name, result, item.detail)
    console.print(table)
