"""Vendor timestamps as the unified rows read them: ISO 8601 with "Z", "+0000" (Salesforce) or
"+hh:mm", epoch milliseconds as a number or a digit string; always UTC, blank close dates are None."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sync_assets.entities import DealRow

MARCH_1 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "sent",
    [
        "2026-03-01T10:00:00Z",
        "2026-03-01T10:00:00.000Z",
        "2026-03-01T10:00:00.000+0000",
        "2026-03-01T12:00:00+02:00",
        "2026-03-01T03:00:00.000-0700",
        " 2026-03-01T10:00:00Z ",
        "2026-03-01T10:00:00",  # no offset: taken as UTC
        1772359200000,
        1772359200000.0,
        "1772359200000",
    ],
)
def test_every_vendor_format_reads_as_the_same_utc_instant(sent):
    row = DealRow(source_id="1", source_updated_at=sent, close_date=sent)
    assert row.source_updated_at == MARCH_1 and row.source_updated_at.tzinfo == UTC
    assert row.close_date == MARCH_1


def test_fractions_are_kept_and_a_blank_close_date_is_none():
    row = DealRow(source_id="1", source_updated_at="2026-03-01T10:00:00.123Z", close_date="")
    assert row.source_updated_at == MARCH_1.replace(microsecond=123000)
    assert row.close_date is None


@pytest.mark.parametrize("sent", ["yesterday", "2026-13-01T00:00:00Z", "", None])
def test_an_unreadable_modified_time_is_a_bad_record(sent):
    with pytest.raises(ValidationError):
        DealRow(source_id="1", source_updated_at=sent)
