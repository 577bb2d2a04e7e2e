"""`datasync sync`: not yet available."""

from __future__ import annotations

import click


@click.command(name="sync", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args: tuple[str, ...]) -> None:
    """Not yet available."""
    raise click.ClickException("`datasync sync` is not available yet in this version")
