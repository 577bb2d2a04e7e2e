"""`datasync sandbox APP`: serve a sandbox app's API locally until Ctrl-C.

Generic over the `datasync.sandboxes` entry points: only the chosen sandbox is imported, so
one broken or missing sandbox never hides the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import yaml

from datasync.api.models import AuthType
from datasync.sandbox import RateLimit, SandboxApp

GROUP = "datasync.sandboxes"


def available_sandboxes() -> list[str]:
    return sorted({entry.name for entry in entry_points(group=GROUP)})


def load_sandbox(name: str) -> type[SandboxApp]:
    for entry in entry_points(group=GROUP):
        if entry.name == name:
            try:
                loaded = entry.load()
            except Exception as error:  # an import error in a plugin must not be a traceback
                raise click.ClickException(
                    f"sandbox {name!r} could not be loaded ({type(error).__name__}: {error})"
                ) from None
            if not (isinstance(loaded, type) and issubclass(loaded, SandboxApp)):
                raise click.ClickException(f"sandbox {name!r} is not a SandboxApp")
            return loaded
    raise click.ClickException(
        f"unknown sandbox {name!r}; available: {', '.join(available_sandboxes()) or 'none'}"
    )


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Records from a JSON Lines file, one object per line; blank lines are skipped."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise click.ClickException(
                    f"{path}:{number}: not valid JSON ({error.msg}); each line must be one "
                    "JSON object"
                ) from None
            if not isinstance(record, dict):
                raise click.ClickException(f"{path}:{number}: each line must be a JSON object")
            yield record


def secret_manifest(app: str, auth_type: AuthType, data: dict[str, str]) -> str:
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{app}-sandbox-{auth_type.value.lower()}"},
        "type": "Opaque",
        "stringData": data,
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def describe(sandbox: SandboxApp, app: str, loaded: int) -> str:
    lines = [
        f"{app} sandbox listening on {sandbox.base_url}  ({loaded} records loaded)",
        "",
        "Connector settings:",
        yaml.safe_dump({"settings": sandbox.connector_settings()}, sort_keys=False).rstrip(),
        "",
        "Local URLs are refused unless the operator or CLI runs with "
        "DATASYNC_ALLOW_SANDBOX_URLS=true.",
    ]
    for auth_type in AuthType:
        lines += [
            "",
            f"# auth type {auth_type.value}: kubectl apply -f - <<'EOF'",
            secret_manifest(app, auth_type, sandbox.credentials(auth_type)).rstrip(),
            "EOF",
        ]
    lines += ["", "Press Ctrl-C to stop."]
    return "\n".join(lines)


async def serve(sandbox: SandboxApp, app: str, data: Path | None) -> None:
    loaded = sandbox.load(read_records(data)) if data is not None else 0
    await sandbox.start()
    click.echo(describe(sandbox, app, loaded), nl=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.stop()


@click.command(name="sandbox")
@click.argument("app")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to listen on (0 picks a free one).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON Lines file of records (the app's field names) to load first.",
)
@click.option(
    "--rate-limit",
    "rate_limit",
    metavar="REQUESTS/SECONDSs",
    help="Enforce a rate limit such as 100/10s (off by default).",
)
def command(app: str, port: int, host: str, data: Path | None, rate_limit: str | None) -> None:
    """Serve APP's API (e.g. hubspot, salesforce) from memory until Ctrl-C."""
    sandbox_class = load_sandbox(app)
    limit = None
    if rate_limit:
        try:
            limit = RateLimit.parse(rate_limit)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--rate-limit") from None
    sandbox = sandbox_class(host=host, port=port, rate_limit=limit)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sandbox, app, data))
