"""`datasync status`: sync health of DataSyncConnections at a glance, from the cluster."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from datasync.api.models import GROUP, PLURAL, VERSION
from datasync.logs import no_color
from datasync.status import (
    ConnectionStatus,
    ago,
    connection_status,
    failures_text,
    human_delta,
    moved_text,
    relative,
    skip_samples_text,
    skipped_text,
    sort_key,
    until,
)

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
TIMEOUT = (5, 30)  # connect, read (seconds)


class StatusError(click.ClickException):
    """The cluster could not be read; the message says what to do next."""


def load_client(kubeconfig: str | None, context: str | None) -> tuple[Any, str]:
    """An API client and the default namespace (the context's, else `default`)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    namespace = "default"
    has_file = bool(
        kubeconfig or os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser().exists()
    )
    try:
        if has_file or context:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
            contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=kubeconfig
            )
            chosen = (
                next((c for c in contexts if c.get("name") == context), None) if context else active
            )
            namespace = str(((chosen or {}).get("context") or {}).get("namespace") or "default")
        else:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
            if SA_NAMESPACE.exists():
                namespace = SA_NAMESPACE.read_text().strip() or "default"
    except ConfigException as error:
        raise StatusError(
            f"no usable Kubernetes configuration ({_first_line(error)}); pass --kubeconfig "
            "FILE or --context NAME, or set KUBECONFIG"
        ) from None
    except OSError as error:
        raise StatusError(
            f"cannot read the kubeconfig: {error.strerror}; check --kubeconfig"
        ) from None
    configuration.retries = False  # fail fast: a person is waiting
    return client.ApiClient(configuration), namespace


def list_connections(
    api: Any,
    namespace: str | None,
    *,
    group: str = GROUP,
    version: str = VERSION,
    plural: str = PLURAL,
) -> list[dict[str, Any]]:
    """DataSyncConnections in `namespace` (all namespaces when None), as plain dicts."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    custom = client.CustomObjectsApi(api)
    where = f"namespace {namespace!r}" if namespace else "any namespace"
    try:
        if namespace is None:
            listed = custom.list_cluster_custom_object(
                group, version, plural, _request_timeout=TIMEOUT
            )
        else:
            listed = custom.list_namespaced_custom_object(
                group, version, namespace, plural, _request_timeout=TIMEOUT
            )
    except ApiException as error:
        raise StatusError(_api_error(error, api, where, f"{plural}.{group}")) from None
    except (HTTPError, OSError) as error:
        host = api.configuration.host
        raise StatusError(
            f"cannot reach the Kubernetes API server at {host} ({type(error).__name__}); is the "
            "cluster running and is this the right --context/--kubeconfig? "
            "(`kubectl cluster-info` checks the same)"
        ) from None
    items = listed.get("items") if isinstance(listed, dict) else None
    return [item for item in items or [] if isinstance(item, dict)]


def _api_error(error: Any, api: Any, where: str, resource: str) -> str:
    host = api.configuration.host
    if error.status == 404:
        return (
            f"the DataSyncConnection CRD ({resource}) is not installed in the cluster at {host}; "
            "install Datasync (`helm install datasync charts/datasync -n datasync-system "
            "--create-namespace`, docs/operations.md) or just the CRD (`datasync crd | kubectl "
            "apply -f -`)"
        )
    if error.status == 401:
        return (
            f"the API server at {host} refused the credentials of the current context; "
            "log in again or pick another --context"
        )
    if error.status == 403:
        return (
            f"not allowed to list {resource} in {where}; ask for get/list on {resource} "
            "(the chart's datasync-viewer role), or pick a namespace you can read with -n"
        )
    return f"the API server at {host} answered {error.status} {error.reason}; try again"


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


# ---------------------------------------------------------------- rendering


def _condition_text(status: str, reason: str) -> Text:
    style = {"True": "green", "False": "bold red"}.get(status, "yellow")
    label = status if not reason or status == "True" else f"{status} ({reason})"
    return Text(label, style=style)


def _result_text(connection: ConnectionStatus) -> Text:
    result = str((connection.last_run or {}).get("result") or "no run yet")
    style = {"Succeeded": "green", "PartiallySucceeded": "yellow", "Failed": "bold red"}
    return Text(result, style=style.get(result, "dim"))


def _in(connection: ConnectionStatus, now: datetime) -> str:
    if connection.next_run is None:
        return "-"
    return f"in {human_delta((connection.next_run - now).total_seconds())}"


def _arrow(connection: ConnectionStatus) -> str:
    arrow = "<->" if connection.direction == "TwoWay" else "->"
    return f"{connection.source} {arrow} {connection.destination}"


def render(
    connections: list[ConnectionStatus], console: Console, now: datetime, all_namespaces: bool
) -> None:
    table = Table(title="DataSyncConnections", title_justify="left")
    columns = ["Namespace"] if all_namespaces else []
    columns += ["Name", "Apps", "Ready", "Credentials", "Last run", "Result", "Next run"]
    for column in columns:
        wraps = column in ("Ready", "Credentials")
        table.add_column(column, overflow="fold", no_wrap=not wraps)
    for connection in connections:
        cells: list[Any] = [connection.namespace] if all_namespaces else []
        finished = (connection.last_run or {}).get("finishedAt")
        cells += [
            connection.name,
            _arrow(connection),
            _condition_text(connection.ready.status, connection.ready.reason),
            _condition_text(connection.credentials.status, connection.credentials.reason),
            relative(finished, now) if finished else "never",
            _result_text(connection),
            "suspended" if connection.suspended else _in(connection, now),
        ]
        table.add_row(*cells)
    console.print(table)
    for connection in connections:
        _details(connection, console, now)


def _details(connection: ConnectionStatus, console: Console, now: datetime) -> None:
    console.print()
    console.print(Text(connection.key, style="bold"), Text(f"  {_arrow(connection)}"))
    lines: list[tuple[str, str]] = []
    if connection.goal:
        lines.append(("goal", connection.goal))
    if not connection.observed:
        lines.append(
            (
                "operator",
                "no status yet: is the operator running and watching this namespace? "
                "(kubectl -n datasync-system get deploy; docs/operations.md)",
            )
        )
    elif connection.stale:
        lines.append(("operator", "has not processed the latest spec change yet"))
    last = connection.last_run or {}
    for label, condition in (
        ("ready", connection.ready),
        ("credentials", connection.credentials),
        ("synced", connection.synced),
    ):
        if label == "synced" and last.get("error"):
            continue  # the run's error below says the same
        if condition.status != "True" and condition.message:
            lines.append((label, f"{condition.status} {condition.reason}: {condition.message}"))
    if last:
        run = f"{last.get('result', '?')}, finished {ago(last.get('finishedAt'), now)}"
        if last.get("job"):
            run += f", job {last['job']}"
        lines.append(("last run", run))
        if last.get("error"):
            lines.append(("error", str(last["error"])))
        lines.append(("records moved", moved_text(connection)))
        lines.append(("skipped", skipped_text(connection)))
        lines += [("", line) for line in skip_samples_text(connection)]
        failures = failures_text(connection)
        lines.append(("failures", failures[0] if failures else "-"))
        lines += [("", line) for line in failures[1:]]
    else:
        lines.append(("last run", "no run has finished yet"))
    if connection.last_success and connection.last_success != last.get("finishedAt"):
        lines.append(("last success", ago(connection.last_success, now)))
    health = connection.health or {}
    if health:
        parts = [f"in sync {health.get('inSync', 0)}"]
        parts += [
            f"excluded {connection.skipped_labels.get(r, r)} {n} ({r})"
            for r, n in health.get("excluded", {}).items()
        ]
        parts += [f"failing {reason} {n}" for reason, n in health.get("failing", {}).items()]
        lines.append(("health", ", ".join(parts)))
    if connection.suspended:
        lines.append(("next run", "none: spec.suspend is true"))
    else:
        lines.append(("next run", f"{until(connection.next_run, now)} ({connection.schedule})"))
    for label, value in lines:
        console.print(f"  {label:<14}{value}", markup=False, highlight=False)


@click.command(name="status")
@click.option("-n", "--namespace", help="Namespace to read [default: the context's namespace].")
@click.option(
    "-A", "--all-namespaces", is_flag=True, help="Read DataSyncConnections in every namespace."
)
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Kubeconfig file.")
@click.option("--context", help="Kubeconfig context to use.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json: a list of objects, one per connection (for scripts).",
)
@click.argument("names", nargs=-1)
def command(
    namespace: str | None,
    all_namespaces: bool,
    kubeconfig: str | None,
    context: str | None,
    output: str,
    names: tuple[str, ...],
) -> None:
    """Show sync health of DataSyncConnections: per connection its apps, Ready and
    credentials, the last run and its result, records moved, skipped and failed by reason
    (with sample record ids), and the next scheduled run. NAMES limits the output."""
    if namespace and all_namespaces:
        raise click.UsageError("use either -n NAMESPACE or -A, not both")
    if kubeconfig and not Path(kubeconfig).is_file():
        raise StatusError(f"kubeconfig {kubeconfig!r} does not exist; check --kubeconfig")
    api, default_namespace = load_client(kubeconfig, context)
    target = None if all_namespaces else (namespace or default_namespace)
    try:
        objects = list_connections(api, target)
    finally:
        api.close()
    now = datetime.now(UTC)
    connections = sorted((connection_status(obj, now) for obj in objects), key=sort_key)
    if names:
        missing = sorted(set(names) - {c.name for c in connections})
        if missing:
            where = f"namespace {target!r}" if target else "any namespace"
            raise StatusError(
                f"no DataSyncConnection named {', '.join(missing)} in {where}; "
                "`datasync status` without names lists them"
                + ("" if all_namespaces else ", -A looks in every namespace")
            )
        connections = [c for c in connections if c.name in names]
    if output == "json":
        click.echo(json.dumps([c.to_json() for c in connections], indent=2))
        return
    console = Console(
        no_color=no_color() or None, highlight=False, width=None if sys.stdout.isatty() else 120
    )
    if not connections:
        where = f"namespace {target!r}" if target else "any namespace"
        console.print(
            f"No DataSyncConnections in {where}."
            + ("" if all_namespaces else " Use -A to look in every namespace.")
            + " To create one: docs/concepts.md, examples/.",
            markup=False,
        )
        return
    render(connections, console, now, all_namespaces)
