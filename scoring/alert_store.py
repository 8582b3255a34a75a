"""Low-score alerts in the database: raised by scanning new answers, worked through the workflow.

Raising is incremental and idempotent. The scanner remembers the highest answer id it has looked at
(``rollup_state`` key ``alerts_answer_id``) and inserts with on-conflict-do-nothing on the alert's
(call, question), so a re-scan, a lost watermark or two scanners at once never raise an alert twice.

Two choices worth knowing:

- Only answers given in the last :data:`MAX_AGE` (2 days) raise alerts, on every scan, not just the
  first. A supervisor cannot call back about a rating from last March, and the id watermark alone
  would not protect them: ``csat import`` of years of history, or turning alerts on for an old
  database, hands out new ids to old answers. Two days still covers a weekend's spool replay after a
  database outage.
- Each scan re-reads :data:`ID_OVERLAP` ids below the watermark. PostgreSQL takes an id when a row is
  inserted but shows the row only when its transaction commits, so a slow insert can become visible
  below a watermark a faster one already pushed past. Re-reading costs nothing thanks to
  on-conflict-do-nothing, and an answer is never missed.

Moves are atomic and race-safe: the state is changed by a conditional ``UPDATE … WHERE state = :from``
and the history row is written in the same transaction, so of two supervisors acknowledging the same
alert at the same moment exactly one succeeds and the other is told the alert moved meanwhile.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, insert, select, update

from ivr.db import _insert
from ivr.models import Alert, AlertEvent, Answer, RollupState, utcnow
from ivr.settings import Settings
from scoring.alerts import RULE_TYPES, AlertTransitionError, alert_reason, clean_note, transition

WATERMARK_KEY = "alerts_answer_id"
MAX_AGE = timedelta(days=2)
ID_OVERLAP = 100


@dataclass(frozen=True)
class AlertRow:
    id: int
    answer_id: int
    call_uniqueid: str
    linkedid: str
    agent: str | None
    queue: str | None
    question: str
    question_type: str
    value: int | None
    reason: str
    state: str
    answered_at: datetime
    created_at: datetime
    updated_at: datetime
    webhook_status: str | None


@dataclass(frozen=True)
class AlertEventRow:
    id: int
    alert_id: int
    at: datetime
    user: str
    from_state: str
    to_state: str
    note: str | None


@dataclass(frozen=True)
class AlertDetail:
    alert: AlertRow
    events: list[AlertEventRow]


class AlertNotFound(LookupError):
    def __init__(self, alert_id: int) -> None:
        super().__init__(f"no alert {alert_id}")
        self.alert_id = alert_id


class AlertMovedMeanwhile(AlertTransitionError):
    """The alert left the state the mover saw before their move landed (another user was quicker)."""


_ALERTS = Alert.__table__.c  # type: ignore[attr-defined]
_EVENTS = AlertEvent.__table__.c  # type: ignore[attr-defined]
_ALERT_COLUMNS = [_ALERTS[f.name] for f in fields(AlertRow)]
_EVENT_COLUMNS = [_EVENTS[f.name] for f in fields(AlertEventRow)]
_ANSWER_COLUMNS = [
    Answer.id,
    Answer.call_uniqueid,
    Answer.linkedid,
    Answer.agent,
    Answer.queue,
    Answer.question,
    Answer.question_type,
    Answer.value,
    Answer.answered_at,
]


def _alert(row: Any) -> AlertRow:
    return AlertRow(**row._mapping)


# -- raising ---------------------------------------------------------------------------------------


def read_watermark(engine: Engine) -> int | None:
    with engine.connect() as conn:
        value = conn.execute(
            select(RollupState.value).where(RollupState.key == WATERMARK_KEY)  # type: ignore[arg-type]
        ).scalar_one_or_none()
    return int(value) if value is not None else None


def scan_new_answers(
    engine: Engine, settings: Settings, *, now: datetime | None = None, max_age: timedelta = MAX_AGE
) -> list[AlertRow]:
    """Raise an alert for every new answer that crosses ``settings.alerts``; returns the new alerts.

    The watermark advances in the same transaction as the inserts: if the database fails halfway, the
    next scan starts from the same place.
    """
    rules = settings.alerts
    if not rules.enabled:
        return []
    cutoff = (now or utcnow()) - max_age
    created: list[AlertRow] = []
    with engine.begin() as conn:
        mark = conn.execute(
            select(RollupState.value).where(RollupState.key == WATERMARK_KEY)  # type: ignore[arg-type]
        ).scalar_one_or_none()
        top = conn.execute(select(func.max(Answer.id))).scalar()
        if top is None:
            return []
        stmt = select(*_ANSWER_COLUMNS).where(
            Answer.id <= top,  # type: ignore[operator]
            Answer.answered_at >= cutoff,  # type: ignore[operator]
            Answer.value.is_not(None),  # type: ignore[union-attr]
            Answer.question_type.in_(sorted(RULE_TYPES)),  # type: ignore[attr-defined]
        )
        if mark is not None:
            stmt = stmt.where(Answer.id > int(mark) - ID_OVERLAP)  # type: ignore[operator]
        for answer in conn.execute(stmt.order_by(Answer.id)).all():  # type: ignore[arg-type]
            reason = alert_reason(answer.question_type, answer.value, rules)
            if reason is None:
                continue
            row = _raise(conn, engine, answer, reason)
            if row is not None:
                created.append(row)
        new_mark = max(top, int(mark)) if mark is not None else top
        conn.execute(
            _insert(engine, RollupState.__table__)
            .values(key=WATERMARK_KEY, value=str(new_mark))
            .on_conflict_do_update(index_elements=["key"], set_={"value": str(new_mark)})
        )
    return created


def _raise(conn: Connection, engine: Engine, answer: Any, reason: str) -> AlertRow | None:
    now = utcnow()
    stmt = (
        _insert(engine, Alert.__table__)
        .values(
            answer_id=answer.id,
            call_uniqueid=answer.call_uniqueid,
            linkedid=answer.linkedid,
            agent=answer.agent,
            queue=answer.queue,
            question=answer.question,
            question_type=answer.question_type,
            value=answer.value,
            reason=reason,
            state="open",
            answered_at=answer.answered_at,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["call_uniqueid", "question"])
        .returning(*_ALERT_COLUMNS)
    )
    row = conn.execute(stmt).first()
    return _alert(row) if row is not None else None


def set_webhook_status(engine: Engine, alert_id: int, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Alert).where(Alert.id == alert_id).values(webhook_status=status[:64])  # type: ignore[arg-type]
        )


# -- reading ---------------------------------------------------------------------------------------


def _scoped(stmt: Select[Any], agents: Collection[str] | None, state: str | None) -> Select[Any]:
    if agents is not None:
        stmt = stmt.where(Alert.agent.in_(sorted(agents)))  # type: ignore[union-attr]
    if state is not None:
        stmt = stmt.where(Alert.state == state)  # type: ignore[arg-type]
    return stmt


def list_alerts(
    engine: Engine,
    *,
    agents: Collection[str] | None,
    state: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AlertRow]:
    """Newest answer first. ``agents=None`` means every alert (admins); a set limits to those agents,
    so alerts of agents in no team (or with no agent at all) are for admins only.
    """
    if agents is not None and not agents:
        return []
    stmt = _scoped(select(*_ALERT_COLUMNS), agents, state)
    stmt = stmt.order_by(Alert.answered_at.desc(), Alert.id.desc()).limit(limit).offset(offset)  # type: ignore[attr-defined, union-attr]
    with engine.connect() as conn:
        return [_alert(row) for row in conn.execute(stmt)]


def state_counts(engine: Engine, *, agents: Collection[str] | None) -> dict[str, int]:
    """How many alerts are in each state, for the filter tabs and the API's totals."""
    if agents is not None and not agents:
        return {}
    stmt = _scoped(select(Alert.state, func.count()), agents, None).group_by(Alert.state)
    with engine.connect() as conn:
        return {state: n for state, n in conn.execute(stmt)}


def get_alert(engine: Engine, alert_id: int) -> AlertDetail | None:
    with engine.connect() as conn:
        row = conn.execute(select(*_ALERT_COLUMNS).where(Alert.id == alert_id)).first()  # type: ignore[arg-type]
        if row is None:
            return None
        events = conn.execute(
            select(*_EVENT_COLUMNS)
            .where(AlertEvent.alert_id == alert_id)  # type: ignore[arg-type]
            .order_by(AlertEvent.at, AlertEvent.id)
        ).all()
    return AlertDetail(_alert(row), [AlertEventRow(**e._mapping) for e in events])


# -- working ---------------------------------------------------------------------------------------


def move(
    engine: Engine,
    alert_id: int,
    to_state: str,
    user: str,
    note: str | None = None,
    *,
    expected_from: str | None = None,
) -> AlertRow:
    """Move the alert to ``to_state`` and record who did it with their note; returns the moved alert.

    ``expected_from`` is the state the user saw (the page sends it): without it the alert's current
    state is read first. Either way the UPDATE only applies from that state, so a move that lost a race
    raises :class:`AlertMovedMeanwhile` and leaves no history row behind.
    Raises AlertNotFound, AlertTransitionError (illegal move) or NoteError.
    """
    text = clean_note(note)
    with engine.begin() as conn:
        current = expected_from
        if current is None:
            current = _current_state(conn, alert_id)
        target = transition(current, to_state)
        now = utcnow()
        moved = conn.execute(
            update(Alert)
            .where(Alert.id == alert_id, Alert.state == current)  # type: ignore[arg-type]
            .values(state=target, updated_at=now)
        ).rowcount
        if not moved:
            actual = _current_state(conn, alert_id)
            raise AlertMovedMeanwhile(
                f"the alert is {actual} now, not {current}: someone else moved it meanwhile."
                " Reload it and decide again."
            )
        conn.execute(
            insert(AlertEvent).values(
                alert_id=alert_id, at=now, user=user, from_state=current, to_state=target, note=text
            )
        )
        row = conn.execute(select(*_ALERT_COLUMNS).where(Alert.id == alert_id)).one()  # type: ignore[arg-type]
    return _alert(row)


def _current_state(conn: Connection, alert_id: int) -> str:
    state = conn.execute(select(Alert.state).where(Alert.id == alert_id)).scalar_one_or_none()  # type: ignore[arg-type]
    if state is None:
        raise AlertNotFound(alert_id)
    return state
