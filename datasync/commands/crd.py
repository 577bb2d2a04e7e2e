"""`datasync crd`: print (or write) the CustomResourceDefinition."""

from __future__ import annotations

from pathlib import Path

import click

from datasync.api.crd import crd_yaml

CRD_PATHS = (Path("crds/datasyncconnections.yaml"), Path("charts/datasync/files/crd.yaml"))


@click.command(name="crd")
@click.option(
    "--write",
    is_flag=True,
    help="Write crds/datasyncconnections.yaml and the chart's copy (run from the repository).",
)
def command(write: bool) -> None:
    """Print the DataSyncConnection CRD, generated from the API models."""
    text = crd_yaml()
    if not write:
        click.echo(text, nl=False)
        return
    for path in CRD_PATHS:
        if path.parent.is_dir():
            path.write_text(text)
            click.echo(f"wrote {path}")
