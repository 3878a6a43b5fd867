"""Validity periods of the emulator's test certificates."""

from __future__ import annotations

import datetime as dt

__all__ = ["add_years", "issue_time"]


def issue_time(now: dt.datetime | None) -> dt.datetime:
    """When a test PKI's certificates start: ``now`` in UTC to the second (naive is UTC),
    or a day ago, so that a verifier whose clock lags a little still accepts them."""
    if now is None:
        now = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    return now.astimezone(dt.UTC).replace(microsecond=0)


def add_years(start: dt.datetime, years: int) -> dt.datetime:
    """``start`` moved ``years`` calendar years on (29 February becomes 28 February)."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return start.replace(year=start.year + years, day=28)
