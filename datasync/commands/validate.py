"""`datasync validate FILE...`: check manifests offline with the operator's own models."""

from __future__ import annotations

from pathlib import Path

import click

from datasync.api.validate import (
    ManifestError,
    collect_secrets,
    is_connection,
    load_documents,
    validate_connection,
)


@click.command(name="validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--secrets",
    "secrets_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Secret manifests to check the referenced keys against (Secrets inside FILES count too).",
)
def command(files: tuple[Path, ...], secrets_files: tuple[Path, ...]) -> None:
    """Validate DataSyncConnection manifests (multi-document YAML; other kinds are ignored).

    Prints `FILE: FIELD: problem` for every problem and exits 0 only when all are valid.
    """
    extra_secrets: dict[str, dict[str, str]] = {}
    failed = False
    try:
        for path in secrets_files:
            extra_secrets.update(collect_secrets(load_documents(path.read_text())))
    except (OSError, ManifestError) as error:
        raise click.ClickException(f"cannot read secrets: {error}") from None
    for path in files:
        failed |= not _validate_file(path, extra_secrets, check_secrets=bool(secrets_files))
    if failed:
        raise SystemExit(1)


def _validate_file(
    path: Path, extra_secrets: dict[str, dict[str, str]], check_secrets: bool
) -> bool:
    try:
        documents = load_documents(path.read_text(encoding="utf-8"))
        secrets_here = collect_secrets(documents)
    except (OSError, UnicodeDecodeError) as error:
        click.echo(f"{path}: cannot read: {error}")
        return False
    except ManifestError as error:
        click.echo(f"{path}: {error}")
        return False
    secrets = {**extra_secrets, **secrets_here} if (check_secrets or secrets_here) else None
    connections = [doc for doc in documents if is_connection(doc)]
    if not connections:
        click.echo(f"{path}: no DataSyncConnection ({len(documents)} other documents ignored)")
        return True
    ok = True
    for number, document in enumerate(connections, start=1):
        label = str(path) if len(connections) == 1 else f"{path} (connection {number})"
        problems = validate_connection(document, secrets)
        for problem in problems:
            click.echo(f"{label}: {problem}")
        ok &= not problems
    if ok:
        click.echo(f"{path}: valid ({len(connections)} DataSyncConnection)")
    return ok
