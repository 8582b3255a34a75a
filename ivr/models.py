"""What csat stores: one row per queue call (with why it was or was not surveyed) and one per answer.

Times are naive UTC everywhere (the same on SQLite and PostgreSQL); exports add the ``Z``.
Caller numbers are never stored: ``caller_hash`` is an HMAC keyed by the settings' secret.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class SurveyState(StrEnum):
    NOT_OFFERED = "not_offered"
    OFFERED = "offered"
    STARTED = "started"
    COMPLETED = "completed"
    PARTIAL = "partial"
    NO_INPUT = "no_input"
    FAILED = "failed"


#: States the survey leg owns; the AMI side never moves a call out of them.
SURVEY_LEG_STATES = frozenset(
    {
        SurveyState.STARTED,
        SurveyState.COMPLETED,
        SurveyState.PARTIAL,
        SurveyState.NO_INPUT,
        SurveyState.FAILED,
    }
)


def _ts(**kw: object) -> object:
    return Field(default=None, sa_column=Column(DateTime(timezone=False), **kw))


class Call(SQLModel, table=True):
    __tablename__ = "calls"

    uniqueid: str = Field(primary_key=True, max_length=64)
    linkedid: str = Field(index=True, max_length=64)
    queue: str | None = Field(default=None, index=True, max_length=128)
    agent: str | None = Field(default=None, index=True, max_length=128)
    agent_interface: str | None = Field(default=None, max_length=128)
    caller_hash: str | None = Field(default=None, index=True, max_length=64)
    joined_at: datetime | None = _ts()
    connected_at: datetime | None = _ts()
    ended_at: datetime | None = _ts()
    hold_seconds: int | None = None
    talk_seconds: int | None = None
    end_reason: str | None = Field(default=None, max_length=32)
    offer: bool | None = None
    offer_reason: str | None = Field(default=None, max_length=64)
    sample_draw: float | None = None
    survey_name: str | None = Field(default=None, max_length=64)
    survey_state: str = Field(default=SurveyState.NOT_OFFERED.value, index=True, max_length=16)
    reason: str | None = Field(default=None, max_length=64)
    survey_started_at: datetime | None = _ts(index=True)
    survey_ended_at: datetime | None = _ts()
    answers_count: int = 0
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=False), nullable=False)
    )


class Answer(SQLModel, table=True):
    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("call_uniqueid", "question", name="uq_answers_call_question"),)

    id: int | None = Field(default=None, primary_key=True)
    call_uniqueid: str = Field(index=True, max_length=64)
    linkedid: str = Field(max_length=64)
    queue: str | None = Field(default=None, index=True, max_length=128)
    agent: str | None = Field(default=None, index=True, max_length=128)
    agent_interface: str | None = Field(default=None, max_length=128)
    survey: str = Field(max_length=64)
    question: str = Field(max_length=64)
    question_type: str = Field(max_length=16)
    position: int
    value: int | None = None
    recording: str | None = Field(default=None, max_length=512)
    tries: int = 1
    answered_at: datetime = Field(sa_column=Column(DateTime(timezone=False), nullable=False, index=True))
