"""Reading the counts a report needs: rolled-up days from the rollup tables, the rest from raw rows.

A report's range is split at the last rolled-up day: days up to it are summed in SQL from
``rollup_answers_daily`` / ``rollup_calls_daily``; later days (normally just today) run the very same
aggregate the rollup writer uses over the raw answers and calls, one local day at a time. The result is
one ``Tally`` per (group, period), whatever mix of sources produced it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select

from ivr.models import VALUE_COLUMNS, AnswerCumulative, AnswerDaily, CallCumulative, CallDaily
from ivr.settings import ReportBy, ReportPeriod
from scoring.figures import FUNNEL_FIELDS, Funnel, Tally
from scoring.periods import days, local_day_bounds, period_start
from scoring.rollups import answers_aggregate, calls_aggregate

NO_TEAM = "(no team)"
UNKNOWN = "(unknown)"


@dataclass(frozen=True)
class ReportQuery:
    by: ReportBy
    date_from: date
    date_to: date  # inclusive
    period: ReportPeriod | None = None
    queue: str | None = None
    question: str | None = None
    agent: str | None = None

    def __post_init__(self) -> None:
        if self.date_to < self.date_from:
            raise ValueError(f"--to ({self.date_to}) is before --from ({self.date_from})")


GroupKey = tuple[str, date | None]  # (group name, period start or None for the whole range)


def load_tallies(
    engine: Engine,
    tz: ZoneInfo,
    query: ReportQuery,
    *,
    rolled_through: date | None,
    team_of: Mapping[str, str] | None = None,
) -> dict[GroupKey, Tally]:
    """Tallies per (group, period) for ``query``; days after ``rolled_through`` come from raw rows."""
    tallies: dict[GroupKey, Tally] = {}
    last_rolled = min(query.date_to, rolled_through) if rolled_through else None
    if last_rolled is not None and last_rolled >= query.date_from:
        if uses_running_totals(query):
            _from_running_totals(engine, query, query.date_from, last_rolled, tallies, team_of or {})
        else:
            _from_rollups(engine, query, query.date_from, last_rolled, tallies, team_of or {})
    raw_from = (
        query.date_from if last_rolled is None else max(query.date_from, last_rolled + timedelta(days=1))
    )
    for day in days(raw_from, query.date_to):
        _from_raw_day(engine, tz, query, day, tallies, team_of or {})
    return tallies


def _group_name(query: ReportQuery, row: Mapping[str, Any], team_of: Mapping[str, str]) -> str:
    if query.by == "team":
        return team_of.get(row["agent"], NO_TEAM) if row["agent"] else NO_TEAM
    return row[query.by] or UNKNOWN


def _key(
    query: ReportQuery, row: Mapping[str, Any], day: date | None, team_of: Mapping[str, str]
) -> GroupKey:
    period = period_start(day, query.period) if query.period and day is not None else None
    return _group_name(query, row, team_of), period


def _add_answer_row(tallies: dict[GroupKey, Tally], key: GroupKey, row: Mapping[str, Any]) -> None:
    tally = tallies.setdefault(key, Tally())
    qtype = row["question_type"]
    if qtype == "comment":
        tally.add_answers("comment", {0: int(row["n"])})
    else:
        tally.add_answers(qtype, {i: int(row[col] or 0) for i, col in enumerate(VALUE_COLUMNS)})


def _add_call_row(tallies: dict[GroupKey, Tally], key: GroupKey, row: Mapping[str, Any]) -> None:
    tally = tallies.setdefault(key, Tally())
    tally.funnel.add(Funnel(**{f: int(row[f] or 0) for f in FUNNEL_FIELDS}))


def _group_columns(query: ReportQuery, table: Any, with_question: bool) -> list[Any]:
    """SQL GROUP BY columns: teams are summed per agent and mapped in Python (membership can change)."""
    by = "agent" if query.by == "team" else query.by
    cols = [table.c.agent] if by == "agent" else [table.c.queue] if by == "queue" else []
    if by == "question" and with_question:
        cols = [table.c.question]
    if query.period:
        cols.append(table.c.day)
    return cols


def _filters(query: ReportQuery, table: Any, with_question: bool) -> list[Any]:
    out = []
    if query.queue is not None:
        out.append(table.c.queue == query.queue)
    if query.agent is not None:
        out.append(table.c.agent == query.agent)
    if query.question is not None and with_question:
        out.append(table.c.question == query.question)
    return out


def _from_rollups(
    engine: Engine,
    query: ReportQuery,
    first: date,
    last: date,
    tallies: dict[GroupKey, Tally],
    team_of: Mapping[str, str],
) -> None:
    a = AnswerDaily.__table__
    group = _group_columns(query, a, with_question=True)
    stmt = (
        select(
            *group,
            a.c.question_type,
            func.sum(a.c.n).label("n"),
            *[func.sum(a.c[c]).label(c) for c in VALUE_COLUMNS],
        )
        .where(a.c.day >= first, a.c.day <= last, *_filters(query, a, with_question=True))
        .group_by(*group, a.c.question_type)
    )
    with engine.connect() as conn:
        for row in conn.execute(stmt).mappings():
            _add_answer_row(tallies, _key(query, row, _day(row.get("day")), team_of), row)
        if query.by == "question":
            return  # calls are not per question: the funnel does not apply
        c = CallDaily.__table__
        group = _group_columns(query, c, with_question=False)
        stmt = (
            select(*group, *[func.sum(c.c[f]).label(f) for f in FUNNEL_FIELDS])
            .where(c.c.day >= first, c.c.day <= last, *_filters(query, c, with_question=False))
            .group_by(*group)
        )
        for row in conn.execute(stmt).mappings():
            _add_call_row(tallies, _key(query, row, _day(row.get("day")), team_of), row)


def uses_running_totals(query: ReportQuery) -> bool:
    """Running totals are per agent and question (no queue): they serve reports without a queue in them."""
    return query.queue is None and query.by in ("agent", "team", "question") and query.period != "day"


def _buckets(query: ReportQuery, first: date, last: date) -> list[tuple[date | None, date, date]]:
    """(period start or None, first day, last day) of each period within [first, last]."""
    if query.period is None:
        return [(None, first, last)]
    out = []
    start = period_start(first, query.period)
    while start <= last:
        nxt = _next_period(start, query.period)
        out.append((start, max(start, first), min(nxt - timedelta(days=1), last)))
        start = nxt
    return out


def _next_period(start: date, period: str) -> date:
    if period == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def _from_running_totals(
    engine: Engine,
    query: ReportQuery,
    first: date,
    last: date,
    tallies: dict[GroupKey, Tally],
    team_of: Mapping[str, str],
) -> None:
    """Each period's counts = running totals at its last day − running totals the day before it starts.

    The subtraction happens in SQL and only agents whose totals moved come back, as plain tuples: a
    thousand agents' report then reads a few thousand short rows and builds no dict per row.
    """
    by_team = query.by == "team"
    with engine.connect() as conn:
        for period, a, b in _buckets(query, first, last):
            for agent, question, qtype, n, *values in conn.execute(_answer_change(query, a, b)):
                group = (
                    team_of.get(agent, NO_TEAM)
                    if by_team
                    else (question if query.by == "question" else agent)
                )
                tally = tallies.get((group or UNKNOWN, period))
                if tally is None:
                    tally = tallies[(group or UNKNOWN, period)] = Tally()
                if qtype == "comment":
                    tally.add_answers("comment", {0: n})
                else:
                    tally.add_answers(qtype, {i: c for i, c in enumerate(values) if c})
            if query.by == "question":
                continue  # calls are not per question: the funnel does not apply
            for agent, *diff in conn.execute(_call_change(query, a, b)):
                group = team_of.get(agent, NO_TEAM) if by_team else agent
                tallies.setdefault((group or UNKNOWN, period), Tally()).funnel.add(Funnel(*diff))


def _answer_change(query: ReportQuery, first: date, last: date) -> Any:
    end, start = AnswerCumulative.__table__.alias("e"), AnswerCumulative.__table__.alias("s")
    joined = end.outerjoin(
        start,
        (start.c.day == first - timedelta(days=1))
        & (start.c.agent == end.c.agent)
        & (start.c.question == end.c.question),
    )
    where = [end.c.day == last, end.c.n > func.coalesce(start.c.n, 0)]
    if query.agent is not None:
        where.append(end.c.agent == query.agent)
    if query.question is not None:
        where.append(end.c.question == query.question)
    moved = [end.c[c] - func.coalesce(start.c[c], 0) for c in ("n", *VALUE_COLUMNS)]
    return select(end.c.agent, end.c.question, end.c.question_type, *moved).select_from(joined).where(*where)


def _call_change(query: ReportQuery, first: date, last: date) -> Any:
    end, start = CallCumulative.__table__.alias("e"), CallCumulative.__table__.alias("s")
    joined = end.outerjoin(start, (start.c.day == first - timedelta(days=1)) & (start.c.agent == end.c.agent))
    # ``handled`` counts every call, so an agent with any change in the range has more handled calls.
    where = [end.c.day == last, end.c.handled > func.coalesce(start.c.handled, 0)]
    if query.agent is not None:
        where.append(end.c.agent == query.agent)
    moved = [end.c[f] - func.coalesce(start.c[f], 0) for f in FUNNEL_FIELDS]
    return select(end.c.agent, *moved).select_from(joined).where(*where)


def _from_raw_day(
    engine: Engine,
    tz: ZoneInfo,
    query: ReportQuery,
    day: date,
    tallies: dict[GroupKey, Tally],
    team_of: Mapping[str, str],
) -> None:
    start, end = local_day_bounds(day, tz)
    with engine.connect() as conn:
        answers = answers_aggregate(start, end).subquery()
        stmt = select(answers).where(*_filters(query, answers, with_question=True))
        for row in conn.execute(stmt).mappings():
            _add_answer_row(tallies, _key(query, row, day, team_of), row)
        if query.by == "question":
            return
        calls = calls_aggregate(start, end).subquery()
        stmt = select(calls).where(*_filters(query, calls, with_question=False))
        for row in conn.execute(stmt).mappings():
            _add_call_row(tallies, _key(query, row, day, team_of), row)


def _day(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
