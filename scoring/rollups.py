"""Daily rollups: value counts per local day × agent × queue × question; the funnel per day × agent × queue.

Why: a 30-day report over a contact centre's history must not scan millions of answer rows. The rollup
tables hold finished local days; today (and any day not rolled up yet) is read from the raw tables
with *the same* aggregate query, so a report is exact whichever source a day comes from.

Kept current three ways:
- ``refresh`` (the scheduler in ``csat serve`` every ``[scoring] rollup_interval_s``, and every report
  on demand) recomputes the days that changed: days that ended since the last refresh, days of answers
  with a higher id than last time, and days of calls updated since (minus a safety margin, because
  PostgreSQL may commit ids out of order; every stored answer also touches its call's ``updated_at``).
- ``recompute_days`` for a known set of days (``csat import`` calls it with the imported days).
- ``rebuild`` (``csat rollups rebuild``) recomputes everything from raw data; it also runs by itself
  when the configured time zone differs from the one the rollups were built in.

Each day is recomputed in its own short transaction (delete + insert-from-select), so the IVR's writers
on SQLite never wait more than a moment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, and_, case, delete, func, insert, literal, or_, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from ivr.models import (
    VALUE_COLUMNS,
    Answer,
    AnswerCumulative,
    AnswerDaily,
    Call,
    CallCumulative,
    CallDaily,
    RollupState,
    SurveyState,
)
from scoring.periods import days, local_date, local_day_bounds, local_today

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

#: Calls updated this long before the last refresh are looked at again (commit-order safety margin).
UPDATED_AT_MARGIN = timedelta(minutes=10)

_OFFERED = tuple(
    s.value
    for s in (
        SurveyState.OFFERED,
        SurveyState.STARTED,
        SurveyState.COMPLETED,
        SurveyState.PARTIAL,
        SurveyState.NO_INPUT,
        SurveyState.FAILED,
    )
)
_STARTED = _OFFERED[1:]
FUNNEL_COLUMNS = ("handled", "eligible", "offered", "started", "completed", "partial", "no_input")


# -- the aggregate queries (shared by the rollup writer and by reports reading raw days) -------------


def answers_aggregate(start: datetime, end: datetime) -> Select[Any]:
    """Answers in [start, end) grouped by agent, queue, question: n and one count per value 0–10."""
    agent = func.coalesce(Answer.agent, "")
    queue = func.coalesce(Answer.queue, "")
    counts = [
        func.sum(case((Answer.value == i, 1), else_=0)).label(col)  # type: ignore[arg-type]
        for i, col in enumerate(VALUE_COLUMNS)
    ]
    return (
        select(
            agent.label("agent"),
            queue.label("queue"),
            Answer.question.label("question"),  # type: ignore[attr-defined]
            func.max(Answer.question_type).label("question_type"),
            func.count().label("n"),
            *counts,
        )
        .where(Answer.answered_at >= start, Answer.answered_at < end)  # type: ignore[arg-type,operator]
        .group_by(agent, queue, Answer.question)
    )


def calls_aggregate(start: datetime, end: datetime) -> Select[Any]:
    """Calls an agent handled in [start, end) grouped by agent and queue, one count per funnel stage.

    The call's day is when the agent answered it; a call only the survey leg saw (AMI was down) has
    no ``connected_at`` and uses ``survey_started_at``. The funnel (``docs/scoring.md``):
    handled ⊇ eligible (passed every rule, incl. minimum talk time) ⊇ offered (sent to the survey)
    ⊇ started (the survey leg ran) ⊇ completed / partial / no_input.
    """
    state = Call.survey_state
    agent = func.coalesce(Call.agent, "")
    queue = func.coalesce(Call.queue, "")

    def count_if(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    in_range = or_(
        and_(Call.connected_at >= start, Call.connected_at < end),  # type: ignore[operator]
        and_(
            Call.connected_at.is_(None),  # type: ignore[union-attr]
            Call.survey_started_at >= start,  # type: ignore[operator]
            Call.survey_started_at < end,  # type: ignore[operator]
        ),
    )
    below_minimum = and_(state == SurveyState.NOT_OFFERED.value, Call.reason == "talk_time_below_minimum")
    return (
        select(
            agent.label("agent"),
            queue.label("queue"),
            func.count().label("handled"),
            count_if(and_(Call.offer.is_(True), ~below_minimum)).label("eligible"),  # type: ignore[union-attr]
            count_if(state.in_(_OFFERED)).label("offered"),  # type: ignore[attr-defined]
            count_if(state.in_(_STARTED)).label("started"),  # type: ignore[attr-defined]
            count_if(state == SurveyState.COMPLETED.value).label("completed"),
            count_if(state == SurveyState.PARTIAL.value).label("partial"),
            count_if(state == SurveyState.NO_INPUT.value).label("no_input"),
        )
        .where(in_range)
        .group_by(agent, queue)
    )


# -- writing rollups --------------------------------------------------------------------------------


def recompute_day(conn: Connection, day: date, tz: ZoneInfo) -> None:
    start, end = local_day_bounds(day, tz)
    conn.execute(delete(AnswerDaily).where(AnswerDaily.day == day))  # type: ignore[arg-type]
    conn.execute(delete(CallDaily).where(CallDaily.day == day))  # type: ignore[arg-type]
    answers = answers_aggregate(start, end).subquery()
    conn.execute(
        insert(AnswerDaily).from_select(
            ["day", "agent", "queue", "question", "question_type", "n", *VALUE_COLUMNS],
            select(literal(day, AnswerDaily.__table__.c.day.type), *answers.c),
        )
    )
    calls = calls_aggregate(start, end).subquery()
    conn.execute(
        insert(CallDaily).from_select(
            ["day", "agent", "queue", *FUNNEL_COLUMNS],
            select(literal(day, CallDaily.__table__.c.day.type), *calls.c),
        )
    )


def recompute_days(
    engine: Engine,
    tz: ZoneInfo,
    which: Iterable[date],
    *,
    today: date | None = None,
    progress: Progress | None = None,
) -> int:
    """Recompute the given days (only finished ones: days before the local today); returns how many.

    The running totals are then carried forward from the first recomputed day to the last rolled-up one.
    """
    today = today or local_today(tz)
    todo = sorted(d for d in set(which) if d < today)
    through = rolled_through(engine, tz)
    steps = len(todo) + (len(list(days(todo[0], max(through, todo[-1])))) if todo and through else 0)
    for i, day in enumerate(todo, start=1):
        with engine.begin() as conn:
            recompute_day(conn, day, tz)
        if progress:
            progress(i, steps)
    if todo and through is not None:
        accumulate(engine, todo[0], max(through, todo[-1]), progress=progress, done=len(todo), steps=steps)
    return len(todo)


def accumulate_day(conn: Connection, day: date) -> None:
    """Running totals of ``day`` = those of the day before + the day's rollups summed over queues."""
    conn.execute(delete(AnswerCumulative).where(AnswerCumulative.day == day))  # type: ignore[arg-type]
    conn.execute(delete(CallCumulative).where(CallCumulative.day == day))  # type: ignore[arg-type]
    previous = day - timedelta(days=1)
    cum, daily = AnswerCumulative.__table__, AnswerDaily.__table__
    answer_cols = ["agent", "question", "question_type", "n", *VALUE_COLUMNS]
    both = union_all(
        select(*[cum.c[c] for c in answer_cols]).where(cum.c.day == previous),
        select(*[daily.c[c] for c in answer_cols]).where(daily.c.day == day),
    ).subquery()
    conn.execute(
        insert(AnswerCumulative).from_select(
            ["day", *answer_cols],
            select(
                literal(day, cum.c.day.type),
                both.c.agent,
                both.c.question,
                func.max(both.c.question_type),
                *[func.sum(both.c[c]) for c in ("n", *VALUE_COLUMNS)],
            ).group_by(both.c.agent, both.c.question),
        )
    )
    ccum, cdaily = CallCumulative.__table__, CallDaily.__table__
    call_cols = ["agent", *FUNNEL_COLUMNS]
    calls = union_all(
        select(*[ccum.c[c] for c in call_cols]).where(ccum.c.day == previous),
        select(*[cdaily.c[c] for c in call_cols]).where(cdaily.c.day == day),
    ).subquery()
    conn.execute(
        insert(CallCumulative).from_select(
            ["day", *call_cols],
            select(
                literal(day, ccum.c.day.type), calls.c.agent, *[func.sum(calls.c[c]) for c in FUNNEL_COLUMNS]
            ).group_by(calls.c.agent),
        )
    )


def accumulate(
    engine: Engine,
    first: date,
    last: date,
    *,
    progress: Progress | None = None,
    done: int = 0,
    steps: int = 0,
) -> None:
    for i, day in enumerate(days(first, last), start=done + 1):
        with engine.begin() as conn:
            accumulate_day(conn, day)
        if progress:
            progress(i, steps)


def rebuild(
    engine: Engine, tz: ZoneInfo, *, now: datetime | None = None, progress: Progress | None = None
) -> int:
    """Recompute every finished day from the raw answers and calls; returns the number of days."""
    now = now or datetime.now(UTC)
    today = local_today(tz, now)
    yesterday = today - timedelta(days=1)
    marks = _watermarks(engine)
    with engine.begin() as conn:
        for table in (AnswerDaily, CallDaily, AnswerCumulative, CallCumulative):
            conn.execute(delete(table))
        first = _first_day(conn, tz)
    todo = list(days(first, yesterday)) if first else []
    for i, day in enumerate(todo, start=1):
        with engine.begin() as conn:
            recompute_day(conn, day, tz)
        if progress:
            progress(i, 2 * len(todo))
    if todo:
        accumulate(engine, todo[0], todo[-1], progress=progress, done=len(todo), steps=2 * len(todo))
    _save_state(engine, tz, marks, yesterday)
    log.info("rollups rebuilt", extra={"days": len(todo), "timezone": tz.key})
    return len(todo)


_refreshing = threading.Lock()


def refresh(engine: Engine, tz: ZoneInfo, *, now: datetime | None = None) -> int:
    """Bring the rollups up to date incrementally; returns how many days were recomputed.

    One refresh at a time per process (the scheduler, the dashboard and the API all ask); a refresh
    racing another process's on the same day loses harmlessly: that day is recomputed next time.
    """
    with _refreshing:
        try:
            return _refresh(engine, tz, now=now)
        except IntegrityError:
            log.info("rollups refresh raced another process; the next refresh completes it")
            return 0


def _refresh(engine: Engine, tz: ZoneInfo, *, now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    today = local_today(tz, now)
    state = read_state(engine)
    if state.get("timezone") != tz.key or "rolled_through" not in state:
        return rebuild(engine, tz, now=now)
    marks = _watermarks(engine)
    rolled_through = date.fromisoformat(state["rolled_through"])
    dirty: set[date] = set(days(rolled_through + timedelta(days=1), today - timedelta(days=1)))
    since_id = int(state.get("answers_max_id", "0"))
    since_updated = (
        datetime.fromisoformat(state["calls_updated_at"]) if state.get("calls_updated_at") else None
    )
    with engine.connect() as conn:
        dirty |= _answer_days(conn, since_id, tz)
        if since_updated is not None:
            dirty |= _call_days(conn, since_updated - UPDATED_AT_MARGIN, tz)
    n = recompute_days(engine, tz, dirty, today=today)
    _save_state(engine, tz, marks, today - timedelta(days=1))
    if n:
        log.info("rollups refreshed", extra={"days": n})
    return n


def rolled_through(engine: Engine, tz: ZoneInfo) -> date | None:
    """The last local day the rollups cover (None if never built or built in another time zone)."""
    state = read_state(engine)
    if state.get("timezone") != tz.key or "rolled_through" not in state:
        return None
    return date.fromisoformat(state["rolled_through"])


# -- bookkeeping ------------------------------------------------------------------------------------


def read_state(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {k: v for k, v in conn.execute(select(RollupState.key, RollupState.value))}


def _watermarks(engine: Engine) -> dict[str, str]:
    """Read *before* recomputing, so that anything written meanwhile is seen again next time."""
    with engine.connect() as conn:
        max_id = conn.execute(select(func.max(Answer.id))).scalar() or 0
        max_updated = conn.execute(select(func.max(Call.updated_at))).scalar()
    marks = {"answers_max_id": str(max_id)}
    if max_updated is not None:
        marks["calls_updated_at"] = max_updated.isoformat()
    return marks


def _save_state(engine: Engine, tz: ZoneInfo, marks: dict[str, str], through: date) -> None:
    values = {
        **marks,
        "timezone": tz.key,
        "rolled_through": through.isoformat(),
        "refreshed_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
    }
    with engine.begin() as conn:
        conn.execute(delete(RollupState).where(RollupState.key.in_(list(values))))  # type: ignore[attr-defined]
        conn.execute(insert(RollupState), [{"key": k, "value": v} for k, v in values.items()])


def _utc_dates_to_local_days(utc_dates: Iterable[Any], tz: ZoneInfo) -> set[date]:
    """The local days a UTC date overlaps (one or two; SQLite returns the date as text)."""
    out: set[date] = set()
    for d in utc_dates:
        if d is None:
            continue
        day = d if isinstance(d, date) else date.fromisoformat(str(d)[:10])
        first = datetime.combine(day, datetime.min.time())
        out.update(days(local_date(first, tz), local_date(first + timedelta(days=1, microseconds=-1), tz)))
    return out


def _answer_days(conn: Connection, since_id: int, tz: ZoneInfo) -> set[date]:
    utc_day = func.date(Answer.answered_at)
    rows = conn.execute(select(utc_day).where(Answer.id > since_id).distinct()).scalars()  # type: ignore[operator]
    return _utc_dates_to_local_days(rows, tz)


def _call_days(conn: Connection, since: datetime, tz: ZoneInfo) -> set[date]:
    changed = Call.updated_at >= since  # type: ignore[operator]
    connected = conn.execute(select(func.date(Call.connected_at)).where(changed).distinct()).scalars()
    surveyed = conn.execute(select(func.date(Call.survey_started_at)).where(changed).distinct()).scalars()
    return _utc_dates_to_local_days([*connected, *surveyed], tz)


def _first_day(conn: Connection, tz: ZoneInfo) -> date | None:
    firsts = [
        conn.execute(select(func.min(Answer.answered_at))).scalar(),
        conn.execute(select(func.min(Call.connected_at))).scalar(),
        conn.execute(select(func.min(Call.survey_started_at))).scalar(),
    ]
    known = [f for f in firsts if f is not None]
    return local_date(min(known), tz) if known else None
