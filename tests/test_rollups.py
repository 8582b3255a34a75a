"""Rollups give exactly the figures of a computation over the raw rows, on SQLite and PostgreSQL.

The expected side here is plain Python over every answer and call (local day by zoneinfo, counts by
Counter), independent of the SQL the rollups use, so a wrong day boundary, a lost row or a double
count shows up as a difference.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select

from ivr import db
from ivr.models import AnswerCumulative, AnswerDaily, CallCumulative, CallDaily, SurveyState
from ivr.settings import Settings
from scoring import rollups
from scoring.figures import Funnel, Tally
from scoring.periods import local_date, period_start
from scoring.report import build_report, rows_from_tallies
from scoring.tallies import GroupKey, ReportQuery, uses_running_totals

TZ = "Europe/Berlin"
# The range crosses the end of summer time (25 Oct 2026) and midnights in both offsets.
NOW = datetime(2026, 11, 3, 10, 30, tzinfo=UTC)
AGENTS = ("alice", "bob", "carol", "dave")
QUEUES = ("support", "sales")
QUESTIONS = (("csat", "csat", 1, 5), ("fcr", "yesno", 0, 1), ("nps", "nps", 0, 10), ("note", "comment", 0, 0))
STATES = ("completed", "completed", "completed", "partial", "no_input", "offered", "not_offered")


@dataclass
class Stored:
    uid: str
    agent: str
    queue: str
    connected: datetime
    state: str
    offer: bool
    reason: str | None
    answers: list[tuple[str, str, int | None, datetime]]


def _moment(r: random.Random) -> datetime:
    """Many calls close to local midnight (22:00–02:00 Berlin) and some anywhere."""
    day = NOW - timedelta(days=r.randint(0, 16))
    if r.random() < 0.6:
        base = day.replace(hour=21, minute=0, second=0, microsecond=0)  # 22:00 / 23:00 local
        return (base + timedelta(minutes=r.randint(0, 240))).replace(tzinfo=None)
    return (day - timedelta(minutes=r.randint(0, 1440))).replace(tzinfo=None)


def _store_call(engine: Engine, r: random.Random, i: int) -> Stored:
    uid = f"17{i:05d}.{i}"
    agent, queue = r.choice(AGENTS), r.choice(QUEUES)
    at = min(_moment(r), NOW.replace(tzinfo=None) - timedelta(minutes=5))
    state = r.choice(STATES)
    offer = state != "not_offered" or r.random() < 0.5
    reason = "talk_time_below_minimum" if state == "not_offered" and offer else None
    db.upsert_call(engine, uid, uid, queue=queue, agent=agent, connected_at=at, offer=offer)
    db.set_survey_state(engine, uid, SurveyState(state), reason)
    answers: list[tuple[str, str, int | None, datetime]] = []
    if state in ("completed", "partial"):
        for pos, (key, qtype, low, high) in enumerate(QUESTIONS[: 4 if state == "completed" else 1], start=1):
            value = None if qtype == "comment" else r.randint(low, high)
            when = at + timedelta(seconds=40 + 20 * pos)
            db.insert_answer(
                engine,
                {
                    "call_uniqueid": uid,
                    "linkedid": uid,
                    "queue": queue,
                    "agent": agent,
                    "survey": "default",
                    "question": key,
                    "question_type": qtype,
                    "position": pos,
                    "value": value,
                    "answered_at": when,
                },
            )
            answers.append((key, qtype, value, when))
    return Stored(uid, agent, queue, at, state, offer, reason, answers)


def _expected(calls: list[Stored], query: ReportQuery, tz: ZoneInfo) -> dict[GroupKey, Tally]:
    out: dict[GroupKey, Tally] = {}

    def key(c: Stored, day: date) -> GroupKey:
        group = c.agent if query.by == "agent" else c.queue
        return group, (period_start(day, query.period) if query.period else None)

    for c in calls:
        if query.queue and c.queue != query.queue:
            continue
        day = local_date(c.connected, tz)
        if c.state != "no_call_row" and query.date_from <= day <= query.date_to:
            started = c.state in ("started", "completed", "partial", "no_input", "failed")
            out.setdefault(key(c, day), Tally()).funnel.add(
                Funnel(
                    handled=1,
                    eligible=int(c.offer and c.reason != "talk_time_below_minimum"),
                    offered=int(started or c.state == "offered"),
                    started=int(started),
                    completed=int(c.state == "completed"),
                    partial=int(c.state == "partial"),
                    no_input=int(c.state == "no_input"),
                )
            )
        for question, qtype, value, when in c.answers:
            aday = local_date(when, tz)
            if query.question and question != query.question:
                continue
            if query.date_from <= aday <= query.date_to:
                counts = Counter({0: 1}) if qtype == "comment" else Counter({value: 1})
                out.setdefault(key(c, aday), Tally()).add_answers(qtype, counts)
    return out


@pytest.fixture
def stored(engine: Engine) -> list[Stored]:
    r = random.Random(20261103)
    return [_store_call(engine, r, i) for i in range(260)]


SETTINGS = Settings(timezone=TZ, scoring={"min_responses": 3})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "query",
    [
        ReportQuery(by="agent", date_from=date(2026, 10, 18), date_to=date(2026, 11, 3)),
        ReportQuery(by="queue", period="day", date_from=date(2026, 10, 20), date_to=date(2026, 11, 3)),
        ReportQuery(by="agent", period="week", date_from=date(2026, 10, 19), date_to=date(2026, 11, 2)),
        ReportQuery(by="agent", date_from=date(2026, 10, 24), date_to=date(2026, 10, 26), queue="sales"),
        ReportQuery(by="queue", period="month", date_from=date(2026, 10, 1), date_to=date(2026, 11, 30)),
        ReportQuery(by="agent", period="month", date_from=date(2026, 10, 20), date_to=date(2026, 11, 3)),
        ReportQuery(by="agent", date_from=date(2026, 10, 25), date_to=date(2026, 10, 31), question="fcr"),
    ],
    ids=[
        "agents",
        "queues-daily",
        "agents-weekly",
        "dst-weekend-one-queue",
        "queues-monthly",
        "agents-monthly",
        "agents-one-question",
    ],
)
def test_rollup_report_equals_raw_computation(
    engine: Engine, stored: list[Stored], query: ReportQuery
) -> None:
    report = build_report(engine, SETTINGS, query, now=NOW)
    assert rollups.rolled_through(engine, ZoneInfo(TZ)) == date(2026, 11, 2)  # today (3 Nov) stays raw
    # Reports without a queue in them read the running totals, the others the daily rollups.
    assert uses_running_totals(query) == (query.by == "agent" and query.queue is None)
    expected_rows, expected_totals = rows_from_tallies(
        _expected(stored, query, ZoneInfo(TZ)), query, SETTINGS
    )
    assert report.rows == expected_rows
    assert report.totals == expected_totals
    assert sum(r.responses for r in report.totals) > 0


def test_rollups_hold_finished_days_only_and_count_every_answer(engine: Engine, stored: list[Stored]) -> None:
    tz = ZoneInfo(TZ)
    rollups.refresh(engine, tz, now=NOW)
    with engine.connect() as conn:
        rolled = conn.execute(select(func.sum(AnswerDaily.n))).scalar()
        last_day = conn.execute(select(func.max(AnswerDaily.day))).scalar()
        calls_rolled = conn.execute(select(func.sum(CallDaily.handled))).scalar()
        running = conn.execute(
            select(func.sum(AnswerCumulative.n)).where(AnswerCumulative.day == date(2026, 11, 2))
        ).scalar()
        running_calls = conn.execute(
            select(func.sum(CallCumulative.handled)).where(CallCumulative.day == date(2026, 11, 2))
        ).scalar()
    finished = [a for c in stored for a in c.answers if local_date(a[3], tz) < date(2026, 11, 3)]
    assert rolled == running == len(finished)
    assert running_calls == calls_rolled
    assert str(last_day) <= "2026-11-02"
    assert calls_rolled == sum(1 for c in stored if local_date(c.connected, tz) < date(2026, 11, 3))


def test_refresh_picks_up_late_answers_state_changes_and_the_day_that_just_ended(
    engine: Engine, stored: list[Stored]
) -> None:
    tz = ZoneInfo(TZ)
    query = ReportQuery(by="agent", date_from=date(2026, 10, 20), date_to=date(2026, 11, 4))
    build_report(engine, SETTINGS, query, now=NOW)

    # A late answer for a rolled-up day (a spool replayed after an outage) …
    r = random.Random(7)
    late = _store_call(engine, r, 900)
    db.insert_answer(
        engine,
        {
            "call_uniqueid": "late.1",
            "linkedid": "late.1",
            "queue": "support",
            "agent": "alice",
            "survey": "default",
            "question": "csat",
            "question_type": "csat",
            "position": 1,
            "value": 1,
            "answered_at": datetime(2026, 10, 28, 22, 59, 59),  # 23:59:59 local (UTC+1)
        },
    )
    extra = Stored(
        "late.1", "alice", "support", datetime(2026, 10, 28, 22, 50), "no_call_row", False, None, []
    )
    extra.answers.append(("csat", "csat", 1, datetime(2026, 10, 28, 22, 59, 59)))
    # … and a call that moves from partial to completed on a rolled-up day.
    moved = next(
        c for c in stored if c.state == "partial" and local_date(c.connected, tz) < date(2026, 11, 1)
    )
    db.set_survey_state(engine, moved.uid, SurveyState.COMPLETED)
    moved.state = "completed"

    # The next day: 3 Nov has ended, so it is rolled up too.
    tomorrow = NOW + timedelta(days=1)
    assert rollups.refresh(engine, tz, now=tomorrow) >= 3
    assert rollups.rolled_through(engine, tz) == date(2026, 11, 3)
    report = build_report(engine, SETTINGS, query, now=tomorrow)
    expected_rows, _ = rows_from_tallies(_expected([*stored, late, extra], query, tz), query, SETTINGS)
    assert report.rows == expected_rows


def test_a_new_time_zone_rebuilds_the_rollups(engine: Engine, stored: list[Stored]) -> None:
    rollups.refresh(engine, ZoneInfo(TZ), now=NOW)
    assert rollups.rolled_through(engine, ZoneInfo("America/New_York")) is None
    ny = Settings(timezone="America/New_York", scoring={"min_responses": 3})  # type: ignore[arg-type]
    query = ReportQuery(by="agent", date_from=date(2026, 10, 18), date_to=date(2026, 11, 3))
    report = build_report(engine, ny, query, now=NOW)
    assert rollups.rolled_through(engine, ZoneInfo("America/New_York")) == date(2026, 11, 2)
    expected_rows, _ = rows_from_tallies(_expected(stored, query, ZoneInfo("America/New_York")), query, ny)
    assert report.rows == expected_rows


def test_rebuild_equals_incremental(engine: Engine, stored: list[Stored]) -> None:
    tz = ZoneInfo(TZ)
    rollups.refresh(engine, tz, now=NOW - timedelta(days=6))
    rollups.refresh(engine, tz, now=NOW)

    def snapshot() -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            a = conn.execute(select(AnswerDaily).order_by(*AnswerDaily.__table__.primary_key.columns)).all()
            c = conn.execute(select(CallDaily).order_by(*CallDaily.__table__.primary_key.columns)).all()
        return [tuple(r) for r in a + c]

    incremental = snapshot()
    assert rollups.rebuild(engine, tz, now=NOW) >= 16
    assert snapshot() == incremental


def test_a_transferred_call_counts_for_the_agent_who_completed_it(engine: Engine) -> None:
    """Agent A transfers the caller to queue billing, where B answers; the survey runs after B."""
    t0 = datetime(2026, 11, 2, 9, 0)
    db.upsert_call(engine, "9.1", "9.1", queue="support", agent="alice", connected_at=t0, offer=True)
    # The caller re-enters a queue: the tracker's AgentConnect for B updates the same call row.
    db.upsert_call(engine, "9.1", "9.1", queue="billing", agent="bob", connected_at=t0 + timedelta(minutes=4))
    db.set_survey_state(engine, "9.1", SurveyState.COMPLETED)
    for pos, (key, qtype, value) in enumerate([("csat", "csat", 5), ("fcr", "yesno", 1)], start=1):
        db.insert_answer(
            engine,
            {
                "call_uniqueid": "9.1",
                "linkedid": "9.1",
                "queue": "billing",
                "agent": "bob",  # MEMBERNAME at survey time: the last agent
                "survey": "default",
                "question": key,
                "question_type": qtype,
                "position": pos,
                "value": value,
                "answered_at": t0 + timedelta(minutes=9, seconds=pos),
            },
        )
    settings = Settings(timezone=TZ, scoring={"min_responses": 1})  # type: ignore[arg-type]
    report = build_report(
        engine,
        settings,
        ReportQuery(by="agent", date_from=date(2026, 11, 2), date_to=date(2026, 11, 2)),
        now=NOW,
    )
    assert [(r.group, r.responses, r.handled, r.completed, r.csat_pct) for r in report.rows] == [
        ("bob", 1, 1, 1, 100.0)
    ]
