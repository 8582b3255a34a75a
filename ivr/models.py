"""What csat stores: one row per queue call (with why it was or was not surveyed) and one per answer.

Times are naive UTC everywhere (the same on SQLite and PostgreSQL); exports add the ``Z``.
Caller numbers are never stored: ``caller_hash`` is an HMAC keyed by the settings' secret.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
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
    connected_at: datetime | None = _ts(index=True)
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
        default_factory=utcnow, sa_column=Column(DateTime(timezone=False), nullable=False, index=True)
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


class Agent(SQLModel, table=True):
    """Who an agent is for reports: the team they belong to (``csat agents import``; config ``[teams]``).

    ``agent`` is the queue member name Asterisk reports (MEMBERNAME), the key answers are stored under.
    """

    __tablename__ = "agents"

    agent: str = Field(primary_key=True, max_length=128)
    team: str | None = Field(default=None, index=True, max_length=128)
    display_name: str | None = Field(default=None, max_length=256)
    email: str | None = Field(default=None, max_length=256)
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=False), nullable=False)
    )


#: The largest answer value any question type stores (NPS 10); rollups keep one count column per value.
MAX_VALUE = 10
VALUE_COLUMNS = tuple(f"v{i}" for i in range(MAX_VALUE + 1))


class AnswerDaily(SQLModel, table=True):
    """Answers per local day × agent × queue × question, as value counts (v0 … v10 = how many of each).

    ``n`` counts every answer including valueless ones (voice comments). Unknown agent or queue is ''.
    Days are in the configured time zone; ``rollup_state`` remembers which, and a change rebuilds.
    """

    __tablename__ = "rollup_answers_daily"

    day: date = Field(primary_key=True)
    agent: str = Field(primary_key=True, max_length=128)
    queue: str = Field(primary_key=True, max_length=128)
    question: str = Field(primary_key=True, max_length=64)
    question_type: str = Field(max_length=16)
    n: int = 0
    v0: int = 0
    v1: int = 0
    v2: int = 0
    v3: int = 0
    v4: int = 0
    v5: int = 0
    v6: int = 0
    v7: int = 0
    v8: int = 0
    v9: int = 0
    v10: int = 0


class CallDaily(SQLModel, table=True):
    """The survey funnel per local day × agent × queue (see ``scoring.funnel`` for each stage)."""

    __tablename__ = "rollup_calls_daily"

    day: date = Field(primary_key=True)
    agent: str = Field(primary_key=True, max_length=128)
    queue: str = Field(primary_key=True, max_length=128)
    handled: int = 0
    eligible: int = 0
    offered: int = 0
    started: int = 0
    completed: int = 0
    partial: int = 0
    no_input: int = 0


class RollupState(SQLModel, table=True):
    """Bookkeeping of the incremental rollups: time zone used, watermarks, last refresh."""

    __tablename__ = "rollup_state"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=256)


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    TRAINER = "trainer"
    AGENT = "agent"


class User(SQLModel, table=True):
    """A dashboard login. Supervisors and trainers see their teams; an agent sees only ``agent``'s scores."""

    __tablename__ = "users"

    name: str = Field(primary_key=True, max_length=64)
    role: str = Field(max_length=16)
    password_hash: str = Field(max_length=256)
    agent: str | None = Field(default=None, max_length=128)  # role agent: the member name they are
    disabled: bool = False
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=False), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=False), nullable=False)
    )


class UserTeam(SQLModel, table=True):
    __tablename__ = "user_teams"

    user: str = Field(primary_key=True, max_length=64)
    team: str = Field(primary_key=True, max_length=128)


class ApiToken(SQLModel, table=True):
    """A token for scripts (``csat token create``); only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user: str = Field(index=True, max_length=64)
    token_hash: str = Field(unique=True, max_length=64)
    label: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=False), nullable=False)
    )
    last_used_at: datetime | None = _ts()
    revoked: bool = False


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CALLED_BACK = "called_back"
    CLOSED = "closed"


class Alert(SQLModel, table=True):
    """A low score a supervisor should act on: one per answer that crossed the alert rule."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("call_uniqueid", "question", name="uq_alerts_call_question"),)

    id: int | None = Field(default=None, primary_key=True)
    answer_id: int = Field(index=True)
    call_uniqueid: str = Field(max_length=64)
    linkedid: str = Field(max_length=64)
    agent: str | None = Field(default=None, index=True, max_length=128)
    queue: str | None = Field(default=None, max_length=128)
    question: str = Field(max_length=64)
    question_type: str = Field(max_length=16)
    value: int | None = None
    reason: str = Field(max_length=32)
    state: str = Field(default=AlertState.OPEN.value, index=True, max_length=16)
    answered_at: datetime = Field(sa_column=Column(DateTime(timezone=False), nullable=False, index=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=False), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=False), nullable=False)
    )
    webhook_status: str | None = Field(default=None, max_length=64)


class AlertEvent(SQLModel, table=True):
    """The workflow's history: who moved an alert, from what to what, with which note."""

    __tablename__ = "alert_events"

    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=False), nullable=False))
    user: str = Field(max_length=64)
    from_state: str = Field(max_length=16)
    to_state: str = Field(max_length=16)
    note: str | None = Field(default=None, max_length=2000)


class AnswerCumulative(SQLModel, table=True):
    """Running totals per agent × question: the counts of every local day up to and including ``day``.

    A report over [a, b] needs two rows per agent and question (totals at b minus totals at a − 1), so
    its cost does not grow with the length of the range. Every day from an agent's first answer on
    has a row (dense), up to the last rolled-up day. Built from ``rollup_answers_daily``.
    """

    __tablename__ = "rollup_answers_cumulative"

    day: date = Field(primary_key=True)
    agent: str = Field(primary_key=True, max_length=128)
    question: str = Field(primary_key=True, max_length=64)
    question_type: str = Field(max_length=16)
    n: int = 0
    v0: int = 0
    v1: int = 0
    v2: int = 0
    v3: int = 0
    v4: int = 0
    v5: int = 0
    v6: int = 0
    v7: int = 0
    v8: int = 0
    v9: int = 0
    v10: int = 0


class CallCumulative(SQLModel, table=True):
    """Running totals of the survey funnel per agent (see AnswerCumulative)."""

    __tablename__ = "rollup_calls_cumulative"

    day: date = Field(primary_key=True)
    agent: str = Field(primary_key=True, max_length=128)
    handled: int = 0
    eligible: int = 0
    offered: int = 0
    started: int = 0
    completed: int = 0
    partial: int = 0
    no_input: int = 0
