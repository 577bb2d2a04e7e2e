"""`datasync connectors`: what each connector accepts."""

from __future__ import annotations

import json
from typing import Any

import click

from datasync import registry
from datasync.connector import Connector


def describe_connector(connector: type[Connector]) -> dict[str, Any]:
    settings = []
    for name, field in connector.settings_model.model_fields.items():
        settings.append(
            {
                "name": field.alias or name,
                "required": field.is_required(),
                "default": None if field.is_required() else _default(field.default),
                "description": field.description or "",
            }
        )
    return {
        "name": connector.name,
        "title": connector.title,
        "objects": sorted(connector.standard_fields),
        "maxBatchSize": connector.max_batch_size,
        "auth": [
            {
                "type": str(spec.type),
                "description": spec.description,
                "secretKeys": [
                    {"name": key.name, "optional": key.optional, "description": key.description}
                    for key in spec.keys
                ],
            }
            for spec in connector.auth
        ],
        "settings": settings,
    }


def _default(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


@click.command(name="connectors")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text")
def command(output: str) -> None:
    """List connectors, the auth types each accepts, their Secret keys and settings."""
    described = [describe_connector(cls) for cls in registry.connectors().values()]
    if output == "json":
        click.echo(json.dumps(described, indent=2))
        return
    for info in described:
        click.secho(f"{info['name']}  ({info['title']})", bold=True)
        click.echo(f"  objects: {', '.join(info['objects'])}; batch size {info['maxBatchSize']}")
        for auth in info["auth"]:
            click.echo(f"  auth {auth['type']}: {auth['description']}")
            for key in auth["secretKeys"]:
                optional = " (optional)" if key["optional"] else ""
                click.echo(f"    secret key {key['name']}{optional}: {key['description']}")
        click.echo("  settings:")
        for setting in info["settings"]:
            need = "required" if setting["required"] else f"default {setting['default']!r}"
            click.echo(f"    {setting['name']} ({need}): {setting['description']}")
        click.echo()
