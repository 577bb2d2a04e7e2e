"""`datasync docs`: regenerate docs/api.md from the models."""

from __future__ import annotations

from pathlib import Path

import click

from datasync.api.reference import reference_markdown


@click.command(name="docs")
@click.option("--write", is_flag=True, help="Write docs/api.md (run from the repository).")
def command(write: bool) -> None:
    """Print (or write) the API reference generated from the models."""
    text = reference_markdown()
    if write:
        Path("docs/api.md").write_text(text)
        click.echo("wrote docs/api.md")
    else:
        click.echo(text, nl=False)
