"""`datasync demo`: keep two apps in step, for real, on a machine with no cluster and no
accounts: HubSpot and Salesforce sandbox apps in this process, the real connectors over
HTTP, the real engine, a temporary SQLite state store."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console

from datasync.api.models import SyncResult, SyncSummary
from datasync.demo import render as show
from datasync.demo.sample import LIST_NAME
from datasync.demo.scenario import DemoScenario, RunReport, sandbox_urls_allowed
from datasync.engine import NoProgress, Progress
from datasync.engine.console import LineProgress, RichProgress, render_summary
from datasync.http import ALLOW_LOCAL_ENV
from datasync.logs import no_color, setup_logging

log = logging.getLogger("datasync.demo")


@click.command(name="demo")
@click.option(
    "--size",
    type=click.Choice(["small", "normal"]),
    default="normal",
    show_default=True,
    help="normal: 2,000 HubSpot and 1,500 Salesforce contacts; small: a few hundred.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Leave the sandboxes running afterwards (until Ctrl-C), with URLs and credentials.",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON document at the end (summaries, edit outcomes, timings).",
)
def command(size: str, keep: bool, output: str) -> None:
    """Show a real two-way sync between HubSpot and Salesforce sandbox apps.

    Starts both sandbox apps on free local ports, fills them with a sample of contacts
    (including the messy cases that make syncs go wrong), syncs them, edits records on
    both sides, syncs again and shows what moved and why. Takes well under a minute.
    """
    console = Console(
        no_color=no_color() or None,
        highlight=False,
        width=None if sys.stdout.isatty() else 120,
    )
    # JSON goes to stdout alone; logs then go to stderr.
    text = output == "text"
    setup_logging(
        "text", logging.INFO if text else logging.WARNING, sys.stdout if text else sys.stderr
    )
    try:
        asyncio.run(_demo(size, keep, output, console))
    except KeyboardInterrupt:
        console.print("Stopped; the sandboxes are gone.")


def _progress(output: str, console: Console) -> Progress:
    if output == "json":
        return NoProgress()
    if console.is_terminal:
        return RichProgress(console)
    return LineProgress(
        lambda line: console.print(f"  {line}", markup=False),
        {"source": "HubSpot", "destination": "Salesforce"},
        interval=5.0,
    )


async def _demo(size: str, keep: bool, output: str, console: Console) -> None:
    started = time.monotonic()
    text = output == "text"
    say = console.print if text else _quiet
    with tempfile.TemporaryDirectory(prefix="datasync-demo-") as workdir:
        async with DemoScenario(size, Path(workdir)) as demo:
            say("[bold]Datasync demo: HubSpot <-> Salesforce, both ways[/bold]")
            say(
                f"HubSpot sandbox:    {demo.hubspot.base_url}\n"
                f"Salesforce sandbox: {demo.salesforce.base_url}\n"
                "Both are in-memory imitations of the apps' documented APIs, in this process. "
                "The real connectors talk HTTP to them."
            )
            if text:
                show.print_table(console, show.sample_table(demo.sample))
            say(
                "\n[bold]The connection[/bold] (what you would `kubectl apply`; Secret values "
                "are the sandboxes' own and hidden here):"
            )
            say(demo.manifests_yaml(), markup=False)
            say(
                f"{ALLOW_LOCAL_ENV}=true is set inside this process only (connectors refuse "
                "local URLs otherwise); the state store is a temporary SQLite file. The runs "
                "follow each other within seconds, so the demo sets the engine's re-read "
                "overlap (2 minutes by default, for app clock lag) to zero.\n"
            )

            say("[bold]Run 1: the first sync[/bold]")
            first = await run_step(demo, "1 first sync", output, console)
            _summary(console, first.summary, text)
            say(
                "The first run matched contacts by email (ignoring case), created the rest on "
                "the other side, and let the system of record (Salesforce) decide where "
                "the two apps disagreed. Failing records keep their sample ids above; they "
                "are reported on every run and sync once fixed in the app.\n"
            )

            say("[bold]Run 2: the next scheduled run, nothing edited in between[/bold]")
            second = await run_step(demo, "2 nothing changed", output, console)
            _summary(console, second.summary, text)
            say(
                f"It wrote {show.written(second.summary)} records: the records run 1 wrote were "
                "read back once and found already in step (no ping-pong), and health is as run "
                f"1 left it. Contacts created in HubSpot by the sync are not members of "
                f"{LIST_NAME!r}; while both apps agree they are in sync (read back unchanged, "
                "not skipped). A HubSpot edit of theirs stays in HubSpot (skipped and excluded "
                "as NotInList until the apps agree again or someone adds them to the list), "
                "while Salesforce edits still reach them. The few records skipped here are "
                "out-of-scope contacts run 1 updated from Salesforce, read back: they still "
                "hold HubSpot values that may not leave HubSpot, so they are skipped again, "
                "their health unchanged.\n"
            )

            edits = await demo.edit_both_apps()
            say(
                "[bold]Users edit both apps[/bold]: "
                f"{sum(1 for e in edits if 'hubspot' in e.edits)} HubSpot contacts and "
                f"{sum(1 for e in edits if 'salesforce' in e.edits)} Salesforce contacts, "
                f"{sum(1 for e in edits if e.both)} of them the job title in both apps; "
                f"{sum(1 for e in edits if e.kind == 'joined-list')} HubSpot contacts join "
                f"{LIST_NAME!r}.\n"
            )
            say("[bold]Run 3: the incremental sync[/bold]")
            await run_step(demo, "3 after the edits", output, console)
            _summary(console, demo.runs[-1].summary, text)
            outcomes = demo.outcomes()
            if text:
                show.print_table(console, show.outcomes_table(outcomes))
                show.print_table(console, show.cost_table(demo.runs))
            failed = [outcome for outcome in outcomes if not outcome.as_expected]
            if failed and text:
                console.print(
                    f"{len(failed)} edits did not end as expected (see the OK column).",
                    style="red",
                )
            say(
                "Run 3 read only what changed since run 2 (failing records are reported, and "
                "read again only once they or the apps' schemas change) and made a fraction of "
                "run 1's API calls: the cost of a sync follows the changes, not the size of "
                "the apps.\n"
            )
            seconds = time.monotonic() - started
            if text:
                _next_steps(console)
                console.print(f"Demo finished in {seconds:.1f} s.")
            else:
                click.echo(json.dumps(show.json_document(demo, outcomes, seconds), indent=2))
            if keep:
                await _keep(demo, Path(workdir), console)


async def run_step(demo: DemoScenario, label: str, output: str, console: Console) -> RunReport:
    report = await demo.sync(label, _progress(output, console))
    if report.summary.result == SyncResult.FAILED:
        _summary(console, report.summary, output == "text")
        raise click.ClickException(
            f"run {label!r} of the demo failed: {report.summary.error}. The sandboxes and the "
            "engine run in this process, so this is a bug in this build: please report it "
            "with this output."
        )
    return report


def _summary(console: Console, summary: SyncSummary, text: bool) -> None:
    if not text:
        return
    console.print("(source = HubSpot, destination = Salesforce)", style="dim")
    render_summary(summary, console)
    show.print_table(console, show.reasons_table(summary))


def _next_steps(console: Console) -> None:
    console.print(
        "[bold]The same thing in a cluster[/bold]\n"
        "  helm install datasync charts/datasync -n datasync-system --create-namespace\n"
        "  # fill in the Secrets and settings (docs/connectors/hubspot.md, salesforce.md):\n"
        "  kubectl apply -n crm -f examples/hubspot-salesforce/secrets.yaml\n"
        "  kubectl apply -n crm -f examples/hubspot-salesforce/connection.yaml\n"
        "  datasync status -n crm\n"
        "No accounts yet? examples/sandbox/ runs these sandbox apps in the cluster. "
        "Concepts: docs/concepts.md; when a sync misbehaves: docs/troubleshooting.md."
    )


async def _keep(demo: DemoScenario, workdir: Path, console: Console) -> None:
    connection = workdir / "connection.yaml"
    secrets = workdir / "secrets.yaml"
    revealed = demo.manifests_yaml(reveal=True).split("---\n")
    secrets.write_text("---\n".join(revealed[:-1]))
    connection.write_text(revealed[-1])
    console.print(
        "\n[bold]The sandboxes keep running[/bold] until Ctrl-C (sandbox-only credentials: "
        "they open nothing but these in-memory apps).\n"
        f"  HubSpot:    {demo.hubspot.base_url}\n"
        f"  Salesforce: {demo.salesforce.base_url}\n"
        f"  Secrets:    {secrets}\n"
        f"  Connection: {connection}\n"
        "Sync again from another terminal:",
    )
    console.print(
        f"  {ALLOW_LOCAL_ENV}=true datasync sync -f {connection} --secrets {secrets} "
        f"--state sqlite://{workdir / 'state.sqlite3'}",
        soft_wrap=True,
        markup=False,
    )
    console.print(demo.manifests_yaml(reveal=True), markup=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with sandbox_urls_allowed():
        await stop.wait()
    console.print("Stopped; the sandboxes are gone.")


def _quiet(*args: object, **kwargs: object) -> None:
    return None
