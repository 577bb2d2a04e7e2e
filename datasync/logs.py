"""Logging for every datasync process: JSON lines for the operator and sync Jobs
(`--log-format json`), human lines for local runs (rich on a terminal, plain otherwise).

Log messages never carry record values or secrets (see TEAM standards); this module only
decides how they look.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if _is_json(value) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _is_json(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


def no_color() -> bool:
    """NO_COLOR (https://no-color.org): present and not empty disables colour."""
    return bool(os.environ.get("NO_COLOR"))


def human_handler(stream: TextIO) -> logging.Handler:
    """rich's RichHandler on a terminal, a plain `LEVEL logger: message` line otherwise."""
    if stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        console = Console(file=stream, no_color=no_color() or None, highlight=False)
        handler: logging.Handler = RichHandler(
            console=console, show_path=False, markup=False, rich_tracebacks=False
        )
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
        return handler
    plain = logging.StreamHandler(stream)
    plain.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    return plain


# The logger trees of datasync's own packages: they all get the same handler and level.
APP_LOGGERS = ("datasync", "datasync_connectors", "datasync_operator")
# httpx logs every request URL at INFO (Salesforce query strings carry emails and names),
# httpcore every connection step at DEBUG: never below WARNING, whatever the level.
HTTP_LOGGERS = ("httpx", "httpcore")


def quiet_http_logs() -> None:
    """Keep the HTTP client's loggers at WARNING (for processes that configure logging
    another way, e.g. through kopf, and do not call setup_logging)."""
    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def setup_logging(
    log_format: str = "text",
    level: int | str = logging.INFO,
    stream: TextIO | None = None,
    logger: str = "datasync",
) -> logging.Logger:
    """Configure datasync's logger trees (APP_LOGGERS and `logger`) with one handler at
    `level`, the HTTP client's loggers at WARNING, and return the `logger` logger."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: use one of {', '.join(LOG_FORMATS)}")
    target = stream if stream is not None else sys.stderr
    if log_format == "json":
        handler: logging.Handler = logging.StreamHandler(target)
        handler.setFormatter(JsonFormatter())
    else:
        handler = human_handler(target)
    if isinstance(level, str):
        level = level.upper()
    for name in dict.fromkeys((logger, *APP_LOGGERS)):
        _attach(logging.getLogger(name), handler, level)
    for name in HTTP_LOGGERS:
        _attach(logging.getLogger(name), handler, logging.WARNING)
    return logging.getLogger(logger)


def _attach(target: logging.Logger, handler: logging.Handler, level: int | str) -> None:
    target.handlers[:] = [handler]
    target.setLevel(level)
    target.propagate = False
