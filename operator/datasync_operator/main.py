"""Start the operator: Kubernetes login, metrics server, Kopf with the project's settings."""

from __future__ import annotations

import asyncio
import logging

import kopf

from datasync.logs import quiet_http_logs

from . import handlers, kube, metrics
from .config import OperatorConfig, set_current

log = logging.getLogger(__name__)


class SetupError(Exception):
    """The operator cannot start; the message says what to fix."""


class _QuietWatchEvents(logging.Filter):
    """Kopf logs every watch-event handler call; for Secrets and Jobs cluster-wide that is
    noise at INFO. Failures still pass (they are WARNING or above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(
            f"Handler '{name}' succeeded" in message for name in ("secrets", "jobs", "forget")
        )


def run(
    config: OperatorConfig,
    *,
    kubeconfig: str | None,
    metrics_port: int,
    health_port: int,
    log_format: str,
    log_level: str = "info",
) -> None:
    kopf.configure(
        debug=log_level == "debug",
        quiet=log_level == "warning",
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL,
        log_prefix=log_format != "json",
    )
    logging.getLogger("kopf.objects").addFilter(_QuietWatchEvents())
    quiet_http_logs()  # httpx logs request URLs at INFO; they can carry emails
    set_current(config)
    try:
        credentials = kube.load_credentials(kubeconfig)
    except Exception as error:  # kubernetes.config raises several types
        raise SetupError(f"cannot load Kubernetes credentials: {error}") from None
    kube.set_client(kube.Kube(credentials))
    try:
        metrics.serve(metrics_port)
    except OSError as error:
        raise SetupError(
            f"cannot serve metrics on port {metrics_port}: {error.strerror}; "
            "choose another --metrics-port"
        ) from None
    registry = kopf.OperatorRegistry()
    handlers.register(registry)
    scope = {"namespaces": list(config.namespaces)} if config.namespaces else {"clusterwide": True}
    log.info(
        "datasync operator starting (%s; metrics on :%d, liveness on :%d/healthz)",
        f"namespaces {', '.join(config.namespaces)}" if config.namespaces else "all namespaces",
        metrics_port,
        health_port,
    )
    asyncio.run(
        kopf.operator(
            registry=registry,
            settings=handlers.settings(config.namespaces),
            standalone=True,
            liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz",
            **scope,
        )
    )
