"""Days, weeks and months in the call centre's time zone (``timezone`` in the settings).

Answers are stored in UTC; a supervisor's "Monday" is a local day. A call answered at 23:50 local time
belongs to that local day even if it is already the next day in UTC. Weeks start on Monday (ISO 8601).
Pure functions: no clock is read here, callers pass ``today`` or ``now``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ivr.settings import ExportRange, ReportPeriod


def local_day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The naive-UTC half-open range [start, end) of one local day (23 or 25 hours on DST days)."""
    start = datetime.combine(day, time(), tz).astimezone(UTC).replace(tzinfo=None)
    end = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC).replace(tzinfo=None)
    return start, end


def local_date(utc_naive: datetime, tz: ZoneInfo) -> date:
    return utc_naive.replace(tzinfo=UTC).astimezone(tz).date()


def local_today(tz: ZoneInfo, now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(tz).date()


def days(first: date, last: date) -> Iterator[date]:
    """Every day from ``first`` to ``last`` inclusive."""
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def period_start(day: date, period: ReportPeriod) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_label(start: date, period: ReportPeriod) -> str:
    """How a period is written in reports: 2026-11-23, 2026-W48, 2026-11."""
    if period == "day":
        return start.isoformat()
    if period == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{start.year}-{start.month:02d}"


def resolve_range(name: ExportRange, today: date) -> tuple[date, date]:
    """The inclusive date range a scheduled export covers, relative to the local ``today``."""
    yesterday = today - timedelta(days=1)
    if name == "yesterday":
        return yesterday, yesterday
    if name == "last_7_days":
        return today - timedelta(days=7), yesterday
    if name == "last_30_days":
        return today - timedelta(days=30), yesterday
    if name == "previous_week":
        this_monday = today - timedelta(days=today.weekday())
        return this_monday - timedelta(days=7), this_monday - timedelta(days=1)
    if name == "previous_month":
        first_this = today.replace(day=1)
        last_prev = first_this - timedelta(days=1)
        return last_prev.replace(day=1), last_prev
    if name == "week_to_date":
        return today - timedelta(days=today.weekday()), today
    if name == "month_to_date":
        return today.replace(day=1), today
    raise ValueError(f"unknown range {name!r}")
