"""Read-side queries behind ``csat calls`` and ``csat answers`` (and later the API)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from ivr.models import Answer, Call
from ivr.output import iso_utc

CALL_COLUMNS = ("uniqueid", "linkedid", "queue", "agent", "talk_seconds", "survey_state", "reason")
ANSWER_COLUMNS = (
    "uniqueid",
    "linkedid",
    "queue",
    "agent",
    "question",
    "question_type",
    "value",
    "answered_at",
)


def list_calls(engine: Engine, limit: int = 1000) -> list[dict[str, Any]]:
    with Session(engine) as session:
        calls = session.scalars(
            select(Call).order_by(Call.joined_at.desc().nulls_last(), Call.uniqueid.desc()).limit(limit)  # type: ignore[union-attr]
        ).all()
        return [
            {
                "uniqueid": c.uniqueid,
                "linkedid": c.linkedid,
                "queue": c.queue,
                "agent": c.agent,
                "talk_seconds": c.talk_seconds,
                "survey_state": c.survey_state,
                "reason": c.reason,
                "offer_reason": c.offer_reason,
                "answers": c.answers_count,
            }
            for c in calls
        ]


def list_answers(engine: Engine, limit: int = 10_000) -> list[dict[str, Any]]:
    with Session(engine) as session:
        answers = session.scalars(
            select(Answer).order_by(Answer.answered_at.desc(), Answer.id.desc()).limit(limit)  # type: ignore[union-attr]
        ).all()
        return [
            {
                "uniqueid": a.call_uniqueid,
                "linkedid": a.linkedid,
                "queue": a.queue,
                "agent": a.agent,
                "question": a.question,
                "question_type": a.question_type,
                "value": a.value,
                "recording": a.recording,
                "answered_at": iso_utc(a.answered_at),
            }
            for a in answers
        ]


def calls_with_answers(conn: Connection, ids: Sequence[str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The call rows and their answers (in question order) for these call ids, in two queries."""
    given = conn.execute(
        select(Answer).where(Answer.call_uniqueid.in_(ids)).order_by(Answer.position)  # type: ignore[attr-defined]
    ).all()
    calls = {c.uniqueid: c for c in conn.execute(select(Call).where(Call.uniqueid.in_(ids))).all()}  # type: ignore[attr-defined]
    answers: dict[str, list[Any]] = {}
    for a in given:
        answers.setdefault(a.call_uniqueid, []).append(a)
    return calls, answers
