"""Storage on SQLite and PostgreSQL (the ``engine`` fixture runs every test on both): idempotent writes
(ivr.db), the spool and the store that falls back to it when the database is down (ivr.spool,
ivr.store), the read queries behind the CLI (ivr.queries) and the alembic migration itself.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from ivr import db
from ivr.db import make_engine
from ivr.models import Answer, Call, SurveyState
from ivr.queries import ANSWER_COLUMNS, CALL_COLUMNS, list_answers, list_calls
from ivr.spool import Spool
from ivr.store import CallStore

DOWN_URL = "postgresql+psycopg2://postgres@127.0.0.1:1/x"  # nothing listens on port 1
T = datetime(2025, 3, 10, 12, 0, 0, 123456)
BEFORE_SURVEY = frozenset({"not_offered", "offered"})


def answer(uniqueid: str, question: str = "csat", value: int | None = 4, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "call_uniqueid": uniqueid,
        "linkedid": uniqueid,
        "queue": "support",
        "agent": "agent1",
        "agent_interface": "PJSIP/agent1",
        "survey": "default",
        "question": question,
        "question_type": "nps" if question == "nps" else "csat",
        "position": 1,
        "value": value,
        "recording": None,
        "tries": 1,
        "answered_at": T,
    }
    row.update(kw)
    return row


def answers_of(engine: Engine, uniqueid: str) -> list[tuple[str, int | None, int, datetime]]:
    with Session(engine) as s:
        rows = s.scalars(select(Answer).where(Answer.call_uniqueid == uniqueid).order_by(Answer.id)).all()
        return [(a.question, a.value, a.tries, a.answered_at) for a in rows]


def count(engine: Engine, model: type[SQLModel]) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def down_engine() -> Engine:
    eng = make_engine(DOWN_URL)
    with pytest.raises(OperationalError):  # prove it really is down, the way a dead server is
        eng.connect()
    yield eng
    eng.dispose()


# -- ivr.db ---------------------------------------------------------------------------------------


def test_upsert_creates_with_defaults(engine: Engine) -> None:
    db.upsert_call(engine, "1.1", "1.0")
    call = db.get_call(engine, "1.1")
    assert call is not None
    assert (call.linkedid, call.survey_state, call.answers_count, call.queue) == (
        "1.0",
        "not_offered",
        0,
        None,
    )
    assert isinstance(call.updated_at, datetime)


def test_upsert_call_never_erases_known_fields_with_none(engine: Engine) -> None:
    db.upsert_call(engine, "1.1", "1.1", queue="support", agent="agent1", joined_at=T, hold_seconds=3)
    db.upsert_call(engine, "1.1", "1.1", queue=None, agent=None, joined_at=None, talk_seconds=42)
    db.upsert_call(engine, "1.1", "other-linkedid", agent="agent2", offer=False, offer_reason="cooldown")
    call = db.get_call(engine, "1.1")
    assert call is not None
    assert (call.queue, call.agent, call.joined_at, call.hold_seconds, call.talk_seconds) == (
        "support",
        "agent2",
        T,
        3,
        42,
    )
    assert (call.offer, call.offer_reason) == (False, "cooldown")
    assert call.linkedid == "1.1"  # the first linkedid stays
    assert count(engine, Call) == 1


def test_upsert_refreshes_updated_at(engine: Engine) -> None:
    db.upsert_call(engine, "1.1", "1.1")
    first = db.get_call(engine, "1.1").updated_at  # type: ignore[union-attr]
    db.upsert_call(engine, "1.1", "1.1", queue="q")
    assert db.get_call(engine, "1.1").updated_at >= first  # type: ignore[union-attr]


def test_set_survey_state_with_only_from(engine: Engine) -> None:
    db.upsert_call(engine, "1.1", "1.1")
    assert db.set_survey_state(engine, "1.1", SurveyState.OFFERED, only_from=BEFORE_SURVEY) is True
    assert db.set_survey_state(
        engine,
        "1.1",
        SurveyState.STARTED,
        only_from=BEFORE_SURVEY,
        survey_started_at=T,
        survey_name="default",
    )
    # the AMI side may not move a call out of a survey-leg state
    moved = db.set_survey_state(
        engine, "1.1", SurveyState.NOT_OFFERED, "caller_hung_up", only_from=db.not_in_survey_leg()
    )
    assert moved is False
    call = db.get_call(engine, "1.1")
    assert call is not None
    assert (call.survey_state, call.reason, call.survey_started_at, call.survey_name) == (
        "started",
        None,
        T,
        "default",
    )
    assert db.set_survey_state(
        engine, "1.1", SurveyState.COMPLETED, "done", only_from=frozenset({"started"}), survey_ended_at=T
    )
    call = db.get_call(engine, "1.1")
    assert (call.survey_state, call.reason, call.survey_ended_at) == ("completed", "done", T)  # type: ignore[union-attr]


def test_set_survey_state_without_only_from_and_on_a_missing_call(engine: Engine) -> None:
    db.upsert_call(engine, "1.1", "1.1")
    db.set_survey_state(engine, "1.1", SurveyState.COMPLETED, "x")
    assert db.set_survey_state(engine, "1.1", SurveyState.FAILED, "error:Boom") is True
    call = db.get_call(engine, "1.1")
    assert (call.survey_state, call.reason) == ("failed", "error:Boom")  # type: ignore[union-attr]
    assert db.set_survey_state(engine, "nope", SurveyState.OFFERED) is False
    assert db.get_call(engine, "nope") is None


def test_not_in_survey_leg_is_the_two_pre_survey_states() -> None:
    assert db.not_in_survey_leg() == BEFORE_SURVEY


def test_insert_answer_is_idempotent(engine: Engine) -> None:
    db.upsert_call(engine, "1.1", "1.1")
    assert db.insert_answer(engine, answer("1.1", value=4)) is True
    assert db.insert_answer(engine, answer("1.1", value=5, tries=2)) is False  # a replay never overwrites
    assert answers_of(engine, "1.1") == [("csat", 4, 1, T)]
    assert db.get_call(engine, "1.1").answers_count == 1  # type: ignore[union-attr]
    assert db.insert_answer(engine, answer("1.1", "nps", 10)) is True
    assert db.get_call(engine, "1.1").answers_count == 2  # type: ignore[union-attr]
    assert count(engine, Answer) == 2


def test_last_surveyed_at(engine: Engine) -> None:
    db.upsert_call(engine, "1.1", "1.1", caller_hash="h1", survey_started_at=T - timedelta(days=3))
    db.upsert_call(engine, "1.2", "1.2", caller_hash="h1", survey_started_at=T)
    db.upsert_call(engine, "1.3", "1.3", caller_hash="h1")  # never surveyed
    db.upsert_call(engine, "1.4", "1.4", caller_hash="h2", survey_started_at=T + timedelta(days=1))
    assert db.last_surveyed_at(engine, "h1") == T
    assert db.last_surveyed_at(engine, "h2") == T + timedelta(days=1)
    assert db.last_surveyed_at(engine, "nobody") is None


# -- CallStore + Spool ----------------------------------------------------------------------------


def write_a_whole_call(store: CallStore, uniqueid: str) -> None:
    """The writes one surveyed call makes, in the order the listener and the survey leg make them."""
    store.upsert_call(uniqueid, uniqueid, queue="support", joined_at=T, caller_hash="h1")
    store.upsert_call(uniqueid, uniqueid, agent="agent1", connected_at=T + timedelta(seconds=1))
    store.upsert_call(uniqueid, uniqueid, offer=True, offer_reason="sampled", sample_draw=0.125)
    store.set_state(uniqueid, SurveyState.OFFERED, None, only_from=BEFORE_SURVEY)
    store.set_state(
        uniqueid,
        SurveyState.STARTED,
        None,
        only_from=BEFORE_SURVEY,
        survey_name="default",
        survey_started_at=T + timedelta(seconds=60),
    )
    store.add_answer(answer(uniqueid, "csat", 4))
    store.add_answer(answer(uniqueid, "nps", 10, position=2, answered_at=T + timedelta(seconds=70)))
    store.set_state(
        uniqueid,
        SurveyState.COMPLETED,
        None,
        only_from=frozenset({"started"}),
        survey_ended_at=T + timedelta(seconds=80),
    )
    # the AMI side's end-of-call write, after the survey: must not undo it
    store.set_state(uniqueid, SurveyState.NOT_OFFERED, "caller_hung_up", only_from=BEFORE_SURVEY)


def assert_whole_call_stored(engine: Engine, uniqueid: str) -> None:
    call = db.get_call(engine, uniqueid)
    assert call is not None
    assert (call.queue, call.agent, call.caller_hash, call.offer, call.offer_reason, call.sample_draw) == (
        "support",
        "agent1",
        "h1",
        True,
        "sampled",
        0.125,
    )
    assert (call.survey_state, call.reason, call.survey_name) == ("completed", None, "default")
    assert (call.joined_at, call.survey_started_at, call.survey_ended_at) == (
        T,
        T + timedelta(seconds=60),
        T + timedelta(seconds=80),
    )
    assert call.answers_count == 2
    assert answers_of(engine, uniqueid) == [("csat", 4, 1, T), ("nps", 10, 1, T + timedelta(seconds=70))]


def test_store_writes_straight_through_when_the_database_is_up(engine: Engine, tmp_path: Path) -> None:
    store = CallStore(engine, Spool(tmp_path / "spool"))
    write_a_whole_call(store, "1.1")
    assert_whole_call_stored(engine, "1.1")
    assert store.spool.pending_count() == 0
    assert not store.spool.pending_path.exists()


def test_store_spools_when_the_database_is_down_and_replay_stores_it_once_in_order(
    engine: Engine, down_engine: Engine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    down = CallStore(down_engine, Spool(spool_dir))
    write_a_whole_call(down, "1.1")
    assert down.spool.pending_count() == 9
    kinds = [json.loads(line)["kind"] for line in down.spool.pending_path.read_text().splitlines()]
    assert kinds == ["call"] * 3 + ["state"] * 2 + ["answer"] * 2 + ["state"] * 2
    assert down.last_surveyed_at("h1") is None  # reads are best effort while it is down

    # the database is back (a restarted csat: a new store and a new Spool on the same directory)
    up = CallStore(engine, Spool(spool_dir))
    assert up.replay_spool() == (9, 0)
    assert_whole_call_stored(engine, "1.1")
    assert not up.spool.pending_path.exists()
    assert up.replay_spool() == (0, 0)  # twice changes nothing
    assert_whole_call_stored(engine, "1.1")
    assert count(engine, Answer) == 2 and count(engine, Call) == 1


def test_replaying_the_same_lines_again_changes_nothing(
    engine: Engine, down_engine: Engine, tmp_path: Path
) -> None:
    """A crash between applying the spool and truncating it: the same lines are applied a second time."""
    spool = Spool(tmp_path / "spool")
    write_a_whole_call(CallStore(down_engine, spool), "1.1")
    saved = tmp_path / "copy.jsonl"
    shutil.copy(spool.pending_path, saved)
    up = CallStore(engine, spool)
    assert up.replay_spool() == (9, 0)
    shutil.copy(saved, spool.pending_path)
    assert up.replay_spool() == (9, 0)
    assert_whole_call_stored(engine, "1.1")
    assert count(engine, Answer) == 2


def test_once_a_call_is_spooled_its_later_writes_are_spooled_too(
    engine: Engine, down_engine: Engine, tmp_path: Path
) -> None:
    store = CallStore(down_engine, Spool(tmp_path / "spool"))
    store.upsert_call("1.1", "1.1", queue="support")
    store.set_state("1.1", SurveyState.OFFERED, only_from=BEFORE_SURVEY)
    store.engine = engine  # the database comes back before any replay
    store.set_state("1.1", SurveyState.STARTED, only_from=BEFORE_SURVEY)
    store.add_answer(answer("1.1"))
    store.upsert_call("2.2", "2.2", queue="sales")  # another call is not held back
    assert store.spool.pending_count() == 4
    assert db.get_call(engine, "1.1") is None
    assert db.get_call(engine, "2.2").queue == "sales"  # type: ignore[union-attr]
    assert store.replay_spool() == (4, 0)
    call = db.get_call(engine, "1.1")
    assert (call.survey_state, call.answers_count) == ("started", 1)  # type: ignore[union-attr]
    # after a complete replay, writes go straight to the database again
    store.set_state("1.1", SurveyState.COMPLETED, only_from=frozenset({"started"}))
    assert store.spool.pending_count() == 0
    assert db.get_call(engine, "1.1").survey_state == "completed"  # type: ignore[union-attr]


def test_a_call_state_ends_as_the_last_spooled_state(
    engine: Engine, down_engine: Engine, tmp_path: Path
) -> None:
    store = CallStore(down_engine, Spool(tmp_path / "spool"))
    store.upsert_call("1.1", "1.1")
    for state in [SurveyState.OFFERED, SurveyState.STARTED, SurveyState.PARTIAL, SurveyState.FAILED]:
        store.set_state("1.1", state, f"r-{state.value}")
    store.engine = engine
    assert store.replay_spool() == (5, 0)
    call = db.get_call(engine, "1.1")
    assert (call.survey_state, call.reason) == ("failed", "r-failed")  # type: ignore[union-attr]


def test_spool_survives_a_new_spool_object(tmp_path: Path) -> None:
    first = Spool(tmp_path / "s")
    first.append("answer", {"call_uniqueid": "1.1", "answered_at": T, "value": 4})
    first.append("state", {"uniqueid": "1.1", "state": "completed", "fields": {"survey_ended_at": T}})
    second = Spool(tmp_path / "s")
    assert second.pending_count() == 2
    seen: list[tuple[str, dict[str, Any]]] = []
    assert second.replay(lambda kind, payload: seen.append((kind, payload))) == (2, 0)
    assert seen == [
        ("answer", {"call_uniqueid": "1.1", "answered_at": T, "value": 4}),
        ("state", {"uniqueid": "1.1", "state": "completed", "fields": {"survey_ended_at": T}}),
    ]
    assert isinstance(seen[0][1]["answered_at"], datetime)
    assert second.pending_count() == 0 and first.pending_count() == 0


def test_spool_replay_with_nothing_pending(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "never-created")
    assert spool.pending_count() == 0
    assert spool.replay(lambda kind, payload: pytest.fail("nothing to apply")) == (0, 0)


def test_a_failing_record_stops_replay_and_keeps_the_rest(engine: Engine, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append("call", {"uniqueid": "1.1", "linkedid": "1.1", "queue": "a"})
    spool.append("bogus", {"uniqueid": "1.2"})
    spool.append("call", {"uniqueid": "1.3", "linkedid": "1.3", "queue": "c"})
    store = CallStore(engine, spool)
    assert store.replay_spool() == (1, 2)
    assert db.get_call(engine, "1.1").queue == "a"  # type: ignore[union-attr]
    assert db.get_call(engine, "1.3") is None  # not applied past the failure
    kept = [json.loads(line)["kind"] for line in spool.pending_path.read_text().splitlines()]
    assert kept == ["bogus", "call"]
    assert store.replay_spool() == (0, 2)  # it stays stuck, in order, until someone fixes it


def test_replay_while_the_database_is_still_down_keeps_everything(
    down_engine: Engine, tmp_path: Path
) -> None:
    store = CallStore(down_engine, Spool(tmp_path / "spool"))
    write_a_whole_call(store, "1.1")
    before = store.spool.pending_path.read_text()
    assert store.replay_spool() == (0, 9)
    assert store.spool.pending_path.read_text() == before


def test_a_rejected_write_is_not_mistaken_for_an_outage(engine: Engine, tmp_path: Path) -> None:
    store = CallStore(engine, Spool(tmp_path / "spool"))
    store.upsert_call("1.1", "1.1", queue="support")
    with contextlib.suppress(IntegrityError):
        store.add_answer(answer("1.1", question_type=None))  # NOT NULL violated: a bug, not an outage
    assert store.spool.pending_count() == 0
    store.set_state("1.1", SurveyState.OFFERED)  # and the call's next writes still reach the database
    assert db.get_call(engine, "1.1").survey_state == "offered"  # type: ignore[union-attr]


def test_a_restarted_store_keeps_spooled_calls_in_order(
    engine: Engine, down_engine: Engine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    before_restart = CallStore(down_engine, Spool(spool_dir))
    before_restart.upsert_call("1.1", "1.1", queue="support")
    before_restart.set_state("1.1", SurveyState.STARTED, only_from=BEFORE_SURVEY)
    after_restart = CallStore(engine, Spool(spool_dir))  # the database is back; no replay has run yet
    after_restart.set_state("1.1", SurveyState.COMPLETED, only_from=frozenset({"started"}))
    after_restart.replay_spool()
    assert db.get_call(engine, "1.1").survey_state == "completed"  # type: ignore[union-attr]


def test_spool_replay_keeps_lines_appended_by_another_process(tmp_path: Path) -> None:
    replayer = Spool(tmp_path / "spool")  # `csat spool replay`
    server = Spool(tmp_path / "spool")  # `csat serve`, still spooling
    replayer.append("call", {"uniqueid": "1.1", "linkedid": "1.1"})

    def apply(kind: str, payload: dict[str, Any]) -> None:
        server.append("call", {"uniqueid": "2.2", "linkedid": "2.2"})

    assert replayer.replay(apply) == (1, 0)
    assert server.pending_count() == 1


# -- ivr.queries ----------------------------------------------------------------------------------


def test_list_calls_rows(engine: Engine) -> None:
    db.upsert_call(engine, "1.1", "1.1", queue="support", agent="agent1", joined_at=T, talk_seconds=30)
    db.set_survey_state(engine, "1.1", SurveyState.COMPLETED)
    db.upsert_call(
        engine, "1.2", "1.2", queue="sales", joined_at=T + timedelta(minutes=1), offer_reason="cooldown"
    )
    db.set_survey_state(engine, "1.2", SurveyState.NOT_OFFERED, "cooldown")
    db.insert_answer(engine, answer("1.1"))
    rows = list_calls(engine)
    assert rows == [  # newest first
        {
            "uniqueid": "1.2",
            "linkedid": "1.2",
            "queue": "sales",
            "agent": None,
            "talk_seconds": None,
            "survey_state": "not_offered",
            "reason": "cooldown",
            "offer_reason": "cooldown",
            "answers": 0,
        },
        {
            "uniqueid": "1.1",
            "linkedid": "1.1",
            "queue": "support",
            "agent": "agent1",
            "talk_seconds": 30,
            "survey_state": "completed",
            "reason": None,
            "offer_reason": None,
            "answers": 1,
        },
    ]
    assert set(CALL_COLUMNS) <= set(rows[0])
    assert [r["uniqueid"] for r in list_calls(engine, limit=1)] == ["1.2"]


def test_list_answers_rows_and_iso_z_times(engine: Engine) -> None:
    db.upsert_call(engine, "1.1", "1.0")
    db.insert_answer(engine, answer("1.1", "csat", 5, linkedid="1.0"))
    db.insert_answer(
        engine,
        answer(
            "1.1", "nps", 0, linkedid="1.0", question_type="nps", answered_at=datetime(2025, 3, 10, 12, 0, 7)
        ),
    )
    rows = list_answers(engine)
    assert rows == [
        {
            "uniqueid": "1.1",
            "linkedid": "1.0",
            "queue": "support",
            "agent": "agent1",
            "question": "nps",
            "question_type": "nps",
            "value": 0,
            "recording": None,
            "answered_at": "2025-03-10T12:00:07Z",
        },
        {
            "uniqueid": "1.1",
            "linkedid": "1.0",
            "queue": "support",
            "agent": "agent1",
            "question": "csat",
            "question_type": "csat",
            "value": 5,
            "recording": None,
            "answered_at": "2025-03-10T12:00:00Z",
        },
    ]
    assert set(ANSWER_COLUMNS) <= set(rows[0])
    assert len(list_answers(engine, limit=1)) == 1


def test_list_calls_puts_calls_without_a_join_time_last_on_both_databases(engine: Engine) -> None:
    """A call the AMI side missed (created by the survey leg) has no joined_at; it is not the newest."""
    db.upsert_call(engine, "1.1", "1.1", joined_at=T)
    db.upsert_call(engine, "1.2", "1.2")  # no joined_at
    db.upsert_call(engine, "1.3", "1.3", joined_at=T + timedelta(minutes=5))
    assert [r["uniqueid"] for r in list_calls(engine)] == ["1.3", "1.1", "1.2"]


def test_queries_on_an_empty_database(engine: Engine) -> None:
    assert list_calls(engine) == []
    assert list_answers(engine) == []


def test_finalize_orphaned_surveys(engine: Engine) -> None:
    restart = T + timedelta(hours=1)
    for uid, state, started, answers in [
        ("1.1", SurveyState.STARTED, T, 2),  # open with answers -> partial
        ("1.2", SurveyState.STARTED, T, 0),  # open without answers -> no_input
        ("1.3", SurveyState.STARTED, restart + timedelta(seconds=1), 0),  # started by the new process
        ("1.4", SurveyState.COMPLETED, T, 3),  # finished: untouched
    ]:
        db.upsert_call(engine, uid, uid, survey_started_at=started)
        db.set_survey_state(engine, uid, state, "keep")
        for i in range(answers):
            db.insert_answer(engine, answer(uid, f"q{i}"))
    assert db.finalize_orphaned_surveys(engine, restart) == 2
    got = {
        uid: (c.survey_state, c.reason, c.answers_count)
        for uid in ("1.1", "1.2", "1.3", "1.4")
        if (c := db.get_call(engine, uid))
    }
    assert got == {
        "1.1": ("partial", "csat_stopped_during_survey", 2),
        "1.2": ("no_input", "csat_stopped_during_survey", 0),
        "1.3": ("started", "keep", 0),
        "1.4": ("completed", "keep", 3),
    }
    assert db.finalize_orphaned_surveys(engine, restart) == 0


# -- the migration --------------------------------------------------------------------------------


def test_migration_produces_exactly_the_models_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        tables = set(inspect(conn).get_table_names())
    assert diffs == []
    assert tables == {
        "calls",
        "answers",
        "agents",
        "rollup_answers_daily",
        "rollup_calls_daily",
        "rollup_state",
        "rollup_answers_cumulative",
        "rollup_calls_cumulative",
        "users",
        "user_teams",
        "api_tokens",
        "alerts",
        "alert_events",
        "alembic_version",
    }


def test_migration_is_at_head_and_rerunning_it_is_harmless(engine: Engine, db_url: str) -> None:
    from ivr.migrate import schema_is_current, upgrade

    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0004"
    db.upsert_call(engine, "1.1", "1.1", queue="kept")
    upgrade(db_url)
    assert schema_is_current(db_url)
    assert db.get_call(engine, "1.1").queue == "kept"  # type: ignore[union-attr]


def test_answers_unique_per_call_and_question_in_the_schema(engine: Engine) -> None:
    uniques = inspect(engine).get_unique_constraints("answers")
    assert [sorted(u["column_names"]) for u in uniques] == [["call_uniqueid", "question"]]


def test_an_older_schema_is_not_current(tmp_path: Path) -> None:
    """csat serve refuses an outdated schema (it would lack the dashboard's tables) until `db upgrade`."""
    from ivr.migrate import schema_is_current, upgrade

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    upgrade(url, "0002")
    assert not schema_is_current(url)
    upgrade(url)
    assert schema_is_current(url)
