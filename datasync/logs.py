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


def setup_logging(
    log_format: str = "text",
    level: int | str = logging.INFO,
    stream: TextIO | None = None,
    logger: str = "datasync",
) -> logging.Logger:
    """Configure the `datasync` logger tree (and nothing else) and return it."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: use one of {', '.join(LOG_FORMATS)}")
    target = stream if stream is not None else sys.stderr
    if log_format == "json":
        handler: logging.Handler = logging.StreamHandler(target)
        handler.setFormatter(JsonFormatter())
    else:
        handler = human_handler(target)
    root = logging.getLogger(logger)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    return root
