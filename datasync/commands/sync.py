"""`datasync sync`: run one sync of a DataSyncConnection.

Local mode reads the manifest and Secret manifests from files; cluster mode (the operator's
CronJob, which has no Kubernetes API token) reads a mounted connection file and mounted
Secret volumes (`--secrets-dir` with `source/` and `destination/`), and leaves the summary
in the termination log for the operator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from datasync.api import summary_codec
from datasync.api.models import (
    AuthType,
    DataSyncConnection,
    DataSyncConnectionSpec,
    Side,
    StateStoreType,
    SyncResult,
    SyncSummary,
)
from datasync.connector import ConfigurationError, Connector, FatalError
from datasync.logs import setup_logging
from datasync.secrets import (
    Secret,
    SecretError,
    credentials_for,
    load_secrets_file,
    read_secret_dir,
)
from datasync.state import StateStoreError, open_store
from datasync.tls import ca_bundle_dir

log = logging.getLogger("datasync.sync")

EXIT_CODES = {SyncResult.SUCCEEDED: 0, SyncResult.PARTIALLY_SUCCEEDED: 2, SyncResult.FAILED: 1}


class SetupError(Exception):
    """The run cannot start; the message says what to fix."""


@click.command(name="sync")
@click.option(
    "-f",
    "--file",
    "--connection-file",
    "connection_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="DATASYNC_CONNECTION_FILE",
    help="The DataSyncConnection manifest (YAML).",
)
@click.option(
    "--secrets",
    "secrets_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="DATASYNC_SECRETS_FILE",
    help="Kubernetes Secret manifests (multi-document YAML) named by the spec's secretRefs.",
)
@click.option(
    "--secrets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DATASYNC_SECRETS_DIR",
    help="Cluster mode: mounted Secrets in source/ and destination/ (one file per key).",
)
@click.option(
    "--state",
    "state_url",
    envvar="DATASYNC_STATE",
    help="State store URL: sqlite:///abs/path.sqlite3 or postgresql://... "
    "(default: a SQLite file under $XDG_STATE_HOME/datasync/).",
)
@click.option(
    "--state-dsn-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="DATASYNC_STATE_DSN_FILE",
    help="A file holding the PostgreSQL state store DSN (a mounted Secret key).",
)
@click.option("--dry-run", is_flag=True, envvar="DATASYNC_DRY_RUN", help="Write nothing.")
@click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    envvar="DATASYNC_OUTPUT",
    show_default=True,
    help="table: a readable report; json: exactly the SyncSummary.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="DATASYNC_LOG_FORMAT",
    show_default=True,
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    envvar="DATASYNC_LOG_LEVEL",
    show_default=True,
    help="Log level of datasync and its connectors (no level logs secrets or values).",
)
@click.option(
    "--termination-log",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="DATASYNC_TERMINATION_LOG",
    help="Write the encoded summary here at the end (the pod's termination message).",
)
@click.option("--job-name", envvar="DATASYNC_JOB_NAME", help="The Job running this sync.")
def command(
    connection_file: Path | None,
    secrets_file: Path | None,
    secrets_dir: Path | None,
    state_url: str | None,
    state_dsn_file: Path | None,
    dry_run: bool,
    output: str,
    log_format: str,
    log_level: str,
    termination_log: Path | None,
    job_name: str | None,
) -> None:
    """Run one sync of a DataSyncConnection.

    \b
    Local:   datasync sync -f connection.yaml --secrets secrets.yaml
    Cluster: datasync sync --connection-file /etc/datasync/connection/connection.yaml \\
               --secrets-dir /etc/datasync/secrets --state URL --termination-log PATH
    Exit codes: 0 Succeeded, 2 PartiallySucceeded, 1 Failed.
    """
    setup_logging(log_format, log_level)
    started = datetime.now(UTC)
    try:
        summary = _run(
            connection_file,
            secrets_file,
            secrets_dir,
            state_url,
            state_dsn_file,
            dry_run,
            output,
            job_name,
        )
    except (SetupError, Exception) as exc:
        if isinstance(exc, SetupError):
            message = str(exc)
        else:
            log.debug("unexpected error", exc_info=True)
            message = f"unexpected {type(exc).__name__} (a bug, please report it)"
        log.error("sync cannot run: %s", message)
        summary = SyncSummary(
            job=job_name,
            startedAt=started,
            finishedAt=datetime.now(UTC),
            result=SyncResult.FAILED,
            dryRun=dry_run,
            error=message[:1024],
        )
        if output == "table":
            click.echo(f"Error: {message}", err=True)
    _finish(summary, output, termination_log)
    sys.exit(EXIT_CODES[SyncResult(summary.result)])


def _run(
    connection_file: Path | None,
    secrets_file: Path | None,
    secrets_dir: Path | None,
    state_url: str | None,
    state_dsn_file: Path | None,
    dry_run: bool,
    output: str,
    job_name: str | None,
) -> SyncSummary:
    if connection_file is None:
        raise SetupError(
            "no connection given: pass -f CONNECTION.yaml (or --connection-file in a cluster)"
        )
    if secrets_file is None and secrets_dir is None:
        raise SetupError("no credentials given: pass --secrets SECRETS.yaml (Secret manifests)")
    name, namespace, spec = load_connection(connection_file)
    secrets: dict[Side, Secret] = {}
    manifests = _load_secret_manifests(secrets_file) if secrets_file else None
    for side in Side:
        ref = spec.endpoint(side).auth.secretRef.name
        if secrets_dir is not None:
            secrets[side] = _guard(read_secret_dir, secrets_dir / str(side), ref)
        else:
            assert manifests is not None and secrets_file is not None
            if ref not in manifests:
                found = ", ".join(sorted(manifests)) or "none"
                raise SetupError(
                    f"Secret {ref!r} (spec.{side}.auth.secretRef.name) is not in "
                    f"{str(secrets_file)!r} (it has: {found}); add a `kind: Secret` manifest "
                    f"named {ref!r}"
                )
            secrets[side] = manifests[ref]
    commit_seconds = _commit_seconds()
    url = _state_url(state_url, state_dsn_file, spec, manifests, name)
    connectors = {
        side: _build_connector(
            spec, side, secrets[side], _ca_bundle(spec, side, manifests, secrets_dir)
        )
        for side in Side
    }
    try:
        store = open_store(url, f"{namespace}/{name}")
    except StateStoreError as exc:
        raise SetupError(str(exc)) from None
    log.info("sync of %s/%s started%s", namespace, name, " (dry run)" if dry_run else "")
    try:
        progress = _progress(output)
        return asyncio.run(
            _sync(
                spec,
                connectors[Side.SOURCE],
                connectors[Side.DESTINATION],
                store,
                dry_run,
                progress,
                job_name,
                commit_seconds,
            )
        )
    finally:
        store.close()


COMMIT_SECONDS_ENV = "DATASYNC_COMMIT_SECONDS"


def _commit_seconds() -> float:
    """The engine's grouped-commit interval, from the environment when set (docs/engine.md,
    "Commits")."""
    from datasync.engine.sync import GROUPED_COMMIT_SECONDS

    raw = os.environ.get(COMMIT_SECONDS_ENV)
    if raw is None or not raw.strip():
        return GROUPED_COMMIT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise SetupError(f"{COMMIT_SECONDS_ENV} must be a number of seconds from 0 to 3600")
    return seconds


async def _sync(
    spec: DataSyncConnectionSpec,
    source: Connector,
    destination: Connector,
    store: Any,
    dry_run: bool,
    progress: Any,
    job_name: str | None,
    commit_seconds: float,
) -> SyncSummary:
    from datasync.engine import run_sync

    async with source, destination:
        return await run_sync(
            spec,
            source,
            destination,
            store,
            dry_run=dry_run,
            progress=progress,
            job=job_name,
            commit_seconds=commit_seconds,
        )


def _finish(summary: SyncSummary, output: str, termination_log: Path | None) -> None:
    log.info(
        "sync finished: %s; created %d/%d, updated %d/%d, failed %d",
        summary.result,
        summary.records.toDestination.created,
        summary.records.toSource.created,
        summary.records.toDestination.updated,
        summary.records.toSource.updated,
        summary.failures.total,
    )
    if termination_log is not None:
        try:
            termination_log.write_text(summary_codec.encode(summary), encoding="utf-8")
        except OSError as exc:
            log.error("cannot write the termination log %s: %s", termination_log, exc.strerror)
    if output == "json":
        click.echo(summary.model_dump_json(exclude_none=True))
    else:
        from datasync.engine.console import render_summary

        render_summary(summary, _console())


# ---------------------------------------------------------------- loading


def load_connection(path: Path) -> tuple[str, str, DataSyncConnectionSpec]:
    """(name, namespace, spec) from a DataSyncConnection manifest file, checked by the same
    validator as `datasync validate` (messages like `spec.a.b[1].c: message`)."""
    from datasync.api.validate import (
        ManifestError,
        is_connection,
        load_documents,
        validate_connection,
    )

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SetupError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    try:
        documents = load_documents(text)
    except ManifestError as exc:
        raise SetupError(f"{str(path)!r}: {exc}") from None
    manifests = [d for d in documents if is_connection(d)]
    if not manifests:
        raise SetupError(
            f"{str(path)!r} has no DataSyncConnection manifest "
            "(apiVersion: datasync.io/v1alpha1, kind: DataSyncConnection)"
        )
    if len(manifests) > 1:
        raise SetupError(
            f"{str(path)!r} has {len(manifests)} DataSyncConnections; keep one per file"
        )
    problems = validate_connection(manifests[0])
    if problems:
        raise SetupError(
            f"{str(path)!r} is not a valid DataSyncConnection:\n  "
            + "\n  ".join(str(problem) for problem in problems)
        )
    connection = DataSyncConnection.model_validate(manifests[0])
    return connection.metadata.name, connection.metadata.namespace or "default", connection.spec


def _load_secret_manifests(path: Path) -> dict[str, Secret]:
    try:
        return load_secrets_file(path)
    except SecretError as exc:
        raise SetupError(str(exc)) from None


def _guard(function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except SecretError as exc:
        raise SetupError(str(exc)) from None


def _ca_bundle(
    spec: DataSyncConnectionSpec,
    side: Side,
    manifests: dict[str, Secret] | None,
    secrets_dir: Path | None,
) -> str | None:
    """The PEM text of the side's tls.caBundle Secret key, or None when it has none."""
    endpoint = spec.endpoint(side)
    bundle = endpoint.tls.caBundle if endpoint.tls else None
    if bundle is None:
        return None
    name, key = bundle.secretRef.name, bundle.key
    where = f"spec.{side}.tls.caBundle.secretRef"
    if secrets_dir is not None:
        secret = _guard(read_secret_dir, secrets_dir / ca_bundle_dir(str(side)), name)
    else:
        assert manifests is not None
        if name not in manifests:
            raise SetupError(
                f"Secret {name!r} ({where}) is not in the secrets file; add a `kind: Secret` "
                f"manifest named {name!r} with key {key!r} (the PEM CA certificates)"
            )
        secret = manifests[name]
    pem = secret.data.get(key)
    if not pem:
        raise SetupError(
            f"Secret {name!r} ({where}) has no key {key!r}; put the PEM CA certificates "
            f"there, or set spec.{side}.tls.caBundle.key"
        )
    return str(pem)


def _build_connector(
    spec: DataSyncConnectionSpec, side: Side, secret: Secret, ca_bundle: str | None = None
) -> Connector:
    from datasync import registry
    from datasync.tls import connector_options

    endpoint = spec.endpoint(side)
    try:
        connector_class = registry.get(endpoint.app)
    except registry.UnknownConnectorError as exc:
        raise SetupError(f"spec.{side}.app: {exc}") from None
    auth_type = AuthType(endpoint.auth.type)
    credentials = _guard(
        credentials_for, connector_class, auth_type, secret, f"spec.{side}.auth.secretRef"
    )
    try:
        options = connector_options(connector_class, endpoint, str(side), ca_bundle)
    except ConfigurationError as exc:
        raise SetupError(f"{side} connector {endpoint.app}: {exc}") from None
    try:
        return connector_class(endpoint.settings, credentials, auth_type, **options)
    except ConfigurationError as exc:
        where = f" (spec.{side}.settings.{exc.field})" if exc.field else ""
        raise SetupError(f"{side} connector {endpoint.app}: {exc}{where}") from None
    except FatalError as exc:
        raise SetupError(f"{side} connector {endpoint.app}: {exc}") from None


def _state_url(
    state_url: str | None,
    dsn_file: Path | None,
    spec: DataSyncConnectionSpec,
    manifests: dict[str, Secret] | None,
    name: str,
) -> str:
    if state_url:
        return state_url
    if dsn_file is not None:
        try:
            return dsn_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SetupError(
                f"cannot read the state DSN file {str(dsn_file)!r}: {exc.strerror}"
            ) from None
    if spec.state.type == StateStoreType.POSTGRESQL:
        if spec.state.secretRef is None or manifests is None:
            raise SetupError(
                "spec.state.type is PostgreSQL: pass --state-dsn-file (the mounted `dsn` key) "
                "or --state postgresql://..."
            )
        ref = spec.state.secretRef.name
        dsn = manifests[ref].data.get("dsn") if ref in manifests else None
        if not dsn:
            raise SetupError(
                f"Secret {ref!r} (spec.state.secretRef) with key 'dsn' is not in the secrets "
                "file; add it, or pass --state"
            )
        return dsn
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite://{Path(base).absolute() / 'datasync' / f'{name}.sqlite3'}"


# ---------------------------------------------------------------- output


def _console() -> Console:
    return Console(no_color=bool(os.environ.get("NO_COLOR")) or None, highlight=False)


def _progress(output: str) -> Any:
    from datasync.engine.console import LineProgress, RichProgress

    if output == "table" and sys.stdout.isatty():
        return RichProgress(Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")) or None))
    return LineProgress()
