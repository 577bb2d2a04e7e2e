"""What a run reports about failures carries ids and reasons, never values."""

from __future__ import annotations

from datasync.api.models import Side
from datasync.engine.report import REDACTED, Report, scrub


def test_scrub_removes_values_whatever_their_case_and_any_email() -> None:
    message = scrub(
        "Status ACME-Gold is not allowed for ann@example.com (was acme-gold)",
        ["Acme-Gold", "x"],
    )
    assert "cme-" not in message.lower() and "ann@" not in message
    assert message.count(REDACTED) == 3


def test_a_sample_never_shows_an_email_even_as_a_record_id() -> None:
    report = Report()
    report.failure(Side.SOURCE, "bob@example.com", "InvalidFormat", "bad value")
    report.failure(Side.SOURCE, "0031x00000AbCdE", "InvalidFormat", "bad value")
    ids = [sample.recordId for sample in report.failures().samples]
    assert ids == [REDACTED, "0031x00000AbCdE"]
