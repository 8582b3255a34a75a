"""Database access shared by the AMI listener, the survey leg and the CLI.

Writes are idempotent by key (a call's uniqueid; an answer's call + question) so that a replayed
spool, a reconnect or a restarted csat can never store an answer twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ivr.models import SURVEY_LEG_STATES, Answer, Call, SurveyState, utcnow


def make_engine(url: str) -> Engine:
    """SQLite gets WAL and a busy timeout because the listener and survey threads write concurrently."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session, session.begin():
        yield session


def _insert(engine: Engine, table: Any) -> Any:
    return (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(table)


def upsert_call(engine: Engine, uniqueid: str, linkedid: str, **fields: Any) -> None:
    """Create the call row or fill in the given fields; ``None`` values never erase what is known."""
    values = {k: v for k, v in fields.items() if v is not None}
    values["updated_at"] = utcnow()
    stmt = _insert(engine, Call.__table__).values(uniqueid=uniqueid, linkedid=linkedid, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["uniqueid"], set_=values)
    with engine.begin() as conn:
        conn.execute(stmt)


def set_survey_state(
    engine: Engine,
    uniqueid: str,
    state: SurveyState,
    reason: str | None = None,
    *,
    only_from: frozenset[str] | None = None,
    **fields: Any,
) -> bool:
    """Move a call's survey state; with ``only_from`` the move happens only from those states.

    The AMI side and the survey leg race on the same row (AgentComplete may arrive after the survey
    started), so each side says which states it may move from rather than reading then writing.
    """
    values: dict[str, Any] = {"survey_state": state.value, "updated_at": utcnow(), **fields}
    if reason is not None:
        values["reason"] = reason
    stmt = update(Call).where(Call.uniqueid == uniqueid).values(**values)  # type: ignore[arg-type]
    if only_from is not None:
        stmt = stmt.where(Call.survey_state.in_(sorted(only_from)))  # type: ignore[attr-defined]
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount > 0


def not_in_survey_leg() -> frozenset[str]:
    return frozenset(s.value for s in SurveyState if s not in SURVEY_LEG_STATES)


def insert_answer(engine: Engine, answer: Mapping[str, Any]) -> bool:
    """Store one answer exactly once; returns False when it was already there (a replay)."""
    stmt = _insert(engine, Answer.__table__).values(**answer)
    stmt = stmt.on_conflict_do_nothing(index_elements=["call_uniqueid", "question"])
    with engine.begin() as conn:
        inserted = conn.execute(stmt).rowcount > 0
        if inserted:
            conn.execute(
                update(Call)
                .where(Call.uniqueid == answer["call_uniqueid"])  # type: ignore[arg-type]
                .values(answers_count=Call.answers_count + 1, updated_at=utcnow())
            )
    return inserted


def last_surveyed_at(engine: Engine, caller_hash: str) -> datetime | None:
    """When this caller last started a survey: the cooldown rule needs it."""
    stmt = (
        select(Call.survey_started_at)
        .where(Call.caller_hash == caller_hash, Call.survey_started_at.is_not(None))  # type: ignore[union-attr]
        .order_by(Call.survey_started_at.desc())  # type: ignore[union-attr]
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(stmt).scalar_one_or_none()


def get_call(engine: Engine, uniqueid: str) -> Call | None:
    with Session(engine) as session:
        return session.get(Call, uniqueid)


def finalize_orphaned_surveys(engine: Engine, started_before: datetime) -> int:
    """Surveys a previous csat process was running when it died: Asterisk's AGI() returned when that
    process's socket closed (the caller heard the goodbye), so they can never finish. Answers stay.
    """
    orphaned = (Call.survey_state == SurveyState.STARTED.value) & (Call.survey_started_at < started_before)  # type: ignore[operator]
    with engine.begin() as conn:
        partial = conn.execute(
            update(Call)
            .where(orphaned & (Call.answers_count > 0))  # type: ignore[arg-type]
            .values(
                survey_state=SurveyState.PARTIAL.value,
                reason="csat_stopped_during_survey",
                updated_at=utcnow(),
            )
        ).rowcount
        empty = conn.execute(
            update(Call)
            .where(orphaned & (Call.answers_count == 0))  # type: ignore[arg-type]
            .values(
                survey_state=SurveyState.NO_INPUT.value,
                reason="csat_stopped_during_survey",
                updated_at=utcnow(),
            )
        ).rowcount
    return partial + empty
