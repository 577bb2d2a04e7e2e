"""datasync.logs: one JSON object per line for Jobs and the operator, plain lines in pipes."""

from __future__ import annotations

import io
import json
import logging

import pytest

from datasync.logs import JsonFormatter, setup_logging


def test_json_lines_carry_extras_and_exceptions() -> None:
    stream = io.StringIO()
    setup_logging("json", stream=stream)
    log = logging.getLogger("datasync.test")
    log.info("run %s started", "r1", extra={"connection": "crm/contacts", "records": 3})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("run failed")
    log.debug("hidden at INFO")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "run r1 started" and first["level"] == "info"
    assert first["connection"] == "crm/contacts" and first["records"] == 3
    assert first["logger"] == "datasync.test" and first["time"].endswith("+00:00")
    assert second["level"] == "error" and "RuntimeError: boom" in second["exception"]


def test_multiline_messages_stay_one_line() -> None:
    record = logging.LogRecord("datasync", logging.WARNING, "f", 1, "a\nb", None, None)
    line = JsonFormatter().format(record)
    assert "\n" not in line and json.loads(line)["message"] == "a\nb"


def test_plain_text_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    stream = io.StringIO()
    setup_logging("text", stream=stream)
    logging.getLogger("datasync.x").warning("careful")
    text = stream.getvalue()
    assert "WARNING datasync.x: careful" in text and "\x1b[" not in text


def test_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="json"):
        setup_logging("xml")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rich_on_a_terminal_respects_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    stream = _Terminal()
    logger = setup_logging("text", stream=stream)
    assert type(logger.handlers[0]).__name__ == "RichHandler"
    logging.getLogger("datasync.x").error("look here")
    assert "look here" in stream.getvalue() and "\x1b[3" not in stream.getvalue()


def test_connector_and_operator_logs_share_the_handler_and_httpx_stays_quiet() -> None:
    stream = io.StringIO()
    logging.getLogger("httpx").setLevel(logging.DEBUG)  # as if something turned it on
    setup_logging("json", level="debug", stream=stream)
    logging.getLogger("datasync_connectors.hubspot").debug("connector line")
    logging.getLogger("datasync_operator.handlers").info("operator line")
    logging.getLogger("httpx").info("HTTP Request: GET https://x/?q=ann@example.com")
    logging.getLogger("httpcore.http11").debug("send_request_headers.started")
    logging.getLogger("httpx").warning("httpx warning")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("datasync_connectors.hubspot", "connector line"),
        ("datasync_operator.handlers", "operator line"),
        ("httpx", "httpx warning"),
    ]
