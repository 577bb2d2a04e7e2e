"""The `datasync` command line. Subcommands load lazily so `datasync crd` stays fast."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("datasync.commands.validate", "Validate DataSyncConnection manifests offline."),
    "crd": ("datasync.commands.crd", "Print the CustomResourceDefinition."),
    "connectors": ("datasync.commands.connectors", "List connectors, auth types and settings."),
    "sync": ("datasync.commands.sync", "Run one sync of a connection."),
    "sandbox": ("datasync.commands.sandbox", "Run a sandbox app (HubSpot or Salesforce API)."),
    "operator": ("datasync.commands.operator", "Run the Kubernetes operator."),
    "demo": ("datasync.commands.demo", "Show a real sync between two sandbox apps."),
    "status": ("datasync.commands.status", "Show sync health of connections in a cluster."),
    "docs": ("datasync.commands.docs", "Generate the API reference (docs/api.md)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[cmd_name][0])
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="datasync")
def cli() -> None:
    """Datasync keeps customer records in step between business apps."""


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="datasync")
