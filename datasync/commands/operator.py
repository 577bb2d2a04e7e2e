"""`datasync operator`: run the Kubernetes operator (Kopf) with the project's settings."""

from __future__ import annotations

import json
import os

import click

from datasync.http import ALLOW_LOCAL_ENV, ALLOWED_HOSTS_ENV


def _default_image() -> str:
    from importlib.metadata import version

    return (
        os.environ.get("DATASYNC_SYNC_IMAGE") or f"ghcr.io/datasync/datasync:{version('datasync')}"
    )


@click.command(name="operator")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only this namespace (repeatable). Default: all namespaces.",
)
@click.option(
    "--metrics-port",
    type=int,
    default=8080,
    show_default=True,
    help="Port of the Prometheus /metrics endpoint.",
)
@click.option(
    "--health-port",
    type=int,
    default=8081,
    show_default=True,
    help="Port of the liveness endpoint /healthz.",
)
@click.option(
    "--sync-image",
    default=_default_image,
    help="Image of the sync Jobs [default: $DATASYNC_SYNC_IMAGE, else the release].",
)
@click.option(
    "--sync-image-pull-policy",
    default="IfNotPresent",
    show_default=True,
    type=click.Choice(["Always", "IfNotPresent", "Never"]),
)
@click.option(
    "--sync-resources",
    envvar="DATASYNC_SYNC_JOB_RESOURCES",
    default=None,
    help="JSON resources of the sync container when a connection sets none.",
)
@click.option(
    "--credentials-check-interval",
    type=click.FloatRange(min=2),
    default=3600,
    show_default=True,
    help="Seconds between periodic credentials checks.",
)
@click.option(
    "--allowed-hosts",
    envvar=ALLOWED_HOSTS_ENV,
    default="",
    help="Extra hosts connectors may call (comma-separated, *.domain allowed).",
)
@click.option(
    "--allow-sandbox-urls",
    is_flag=True,
    envvar=ALLOW_LOCAL_ENV,
    help="Let connectors call sandbox apps on localhost (tests and demos only).",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning"], case_sensitive=False),
    default="info",
    envvar="DATASYNC_LOG_LEVEL",
    show_default=True,
    help="Log level (no level logs secrets or record values).",
)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Kubeconfig file [default: in-cluster service account, else $KUBECONFIG].",
)
def command(
    namespaces: tuple[str, ...],
    metrics_port: int,
    health_port: int,
    sync_image: str,
    sync_image_pull_policy: str,
    sync_resources: str | None,
    credentials_check_interval: float,
    allowed_hosts: str,
    allow_sandbox_urls: bool,
    log_format: str,
    log_level: str,
    kubeconfig: str | None,
) -> None:
    """Run the Kubernetes operator that manages DataSyncConnections."""
    from datasync_operator.config import OperatorConfig
    from datasync_operator.main import SetupError, run

    config = OperatorConfig(
        sync_image=sync_image,
        image_pull_policy=sync_image_pull_policy,
        namespaces=tuple(dict.fromkeys(namespaces)),
        credentials_check_interval=credentials_check_interval,
        allowed_hosts=allowed_hosts,
        allow_sandbox_urls=allow_sandbox_urls,
    )
    if sync_resources:
        try:
            parsed = json.loads(sync_resources)
        except ValueError as error:
            raise click.BadParameter(f"not JSON: {error}", param_hint="--sync-resources") from None
        if not isinstance(parsed, dict) or set(parsed) - {"requests", "limits"}:
            raise click.BadParameter(
                'expected {"requests": {...}, "limits": {...}}', param_hint="--sync-resources"
            )
        config.sync_resources = parsed
    # The connectors' host policy reads these in this process (credentials checks).
    os.environ[ALLOWED_HOSTS_ENV] = allowed_hosts
    os.environ[ALLOW_LOCAL_ENV] = "true" if allow_sandbox_urls else "false"
    if (
        kubeconfig is None
        and not os.environ.get("KUBECONFIG")
        and not os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")
        and not os.path.exists(os.path.expanduser("~/.kube/config"))
    ):
        raise click.UsageError(
            "no Kubernetes credentials: pass --kubeconfig, set KUBECONFIG, or run in a pod"
        )
    try:
        run(
            config,
            kubeconfig=kubeconfig,
            metrics_port=metrics_port,
            health_port=health_port,
            log_format=log_format,
            log_level=log_level.lower(),
        )
    except SetupError as error:
        raise click.ClickException(str(error)) from None
