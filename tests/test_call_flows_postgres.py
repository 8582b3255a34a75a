"""The same real calls with csat on PostgreSQL, and PostgreSQL going down in the middle of a survey.

csat reaches PostgreSQL through a loopback TCP relay the test can cut, so "the database is down" is
a real dropped connection, not a mock; the machine's server itself is never touched.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from ivr.caller_hash import caller_hash
from ivr.db import make_engine
from ivr.models import Answer, Call
from ivr.simulate.rig import TEST_PORTS, TcpProxy
from ivr.simulate.sipp_runner import CallCase, CallResult
from tests.asterisk_rig import HASH_SECRET, ROUTES, Centre
from tests.conftest import PG_ADMIN_URL, _pg_admin

pytestmark = pytest.mark.asterisk

PG_PROXY_PORT = TEST_PORTS.ami + 3


class PgCentre:
    def __init__(self, centre: Centre, proxy: TcpProxy, engine: Engine) -> None:
        self.centre = centre
        self.proxy = proxy
        self.engine = engine

    def call(self, *actions: str) -> tuple[str, CallResult]:
        number = self.centre.number()
        case = CallCase(case_id=f"c{number}", exten=ROUTES["support"], caller_number=number, actions=actions)
        (result,) = self.centre.rig.call([case], concurrency=1)
        return number, result

    def wait_row(self, number: str, predicate: Callable[[Call], bool], timeout: float = 15.0) -> Call:
        deadline = time.monotonic() + timeout
        row = None
        while time.monotonic() < deadline:
            with Session(self.engine) as s:
                row = s.scalars(
                    select(Call).where(Call.caller_hash == caller_hash(HASH_SECRET, number))
                ).first()
            if row is not None and predicate(row):
                return row
            time.sleep(0.2)
        raise AssertionError(f"row for {number} never matched: {row}")

    def answers(self, uniqueid: str) -> dict[str, int | None]:
        with Session(self.engine) as s:
            rows = s.scalars(select(Answer).where(Answer.call_uniqueid == uniqueid)).all()
        return {a.question: a.value for a in rows}


@pytest.fixture(scope="module")
def pg(centre: Centre) -> Iterator[PgCentre]:
    schema = f"flow_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    options = quote(f"-csearch_path={schema}", safe="")
    direct_url = f"{PG_ADMIN_URL}?options={options}"
    proxied_url = f"postgresql+psycopg2://postgres@127.0.0.1:{PG_PROXY_PORT}/test?options={options}"
    proxy = TcpProxy(PG_PROXY_PORT, 5432)
    csat = centre.rig.csat
    saved = dict(csat.env)
    csat.env["CSAT_DATABASE_URL"] = proxied_url
    csat.run("db", "upgrade")
    csat.stop()
    csat.mark_log()
    csat.start()
    engine = make_engine(direct_url)
    try:
        yield PgCentre(centre, proxy, engine)
    finally:
        engine.dispose()
        csat.stop()
        csat.env.clear()
        csat.env.update(saved)
        csat.mark_log()
        csat.start()
        proxy.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def test_normal_call_stored_in_postgresql(pg: PgCentre) -> None:
    number, result = pg.call("5", "1", "10")
    assert result.ok, result.error
    row = pg.wait_row(number, lambda r: r.ended_at is not None)
    assert (row.survey_state, row.queue, row.agent) == ("completed", "support", result.agent)
    assert pg.answers(row.uniqueid) == {"csat": 5, "fcr": 1, "nps": 10}


def test_partial_survey_stored_in_postgresql(pg: PgCentre) -> None:
    number, result = pg.call("2", "H")
    assert result.ok, result.error
    row = pg.wait_row(number, lambda r: r.ended_at is not None)
    assert row.survey_state == "partial"
    assert pg.answers(row.uniqueid) == {"csat": 2}


def test_database_down_mid_survey_loses_nothing(pg: PgCentre) -> None:
    """PostgreSQL drops after answer 1: the caller still completes the survey, answers 2–3 go to the
    spool, and once the database is back the scheduler stores them, exactly once, in order.
    """
    holder: dict[str, object] = {}
    number = pg.centre.number()
    # question 2 first gets silence, which leaves time to cut the database after answer 1
    case = CallCase(
        case_id=f"c{number}", exten=ROUTES["support"], caller_number=number, actions=("4", "-", "1", "7P")
    )
    t = threading.Thread(target=lambda: holder.update(r=pg.centre.rig.call([case], concurrency=1)[0]))
    t.start()
    row = pg.wait_row(number, lambda r: r.answers_count >= 1, timeout=30)
    pg.proxy.cut()
    try:
        t.join(60)
        result = holder["r"]
        assert result.ok, result.error
        assert result.prompts == 4  # q1, q2 (silence), q2 again, q3: the survey went on
        spool = pg.centre.rig.data_dir / "spool" / "pending.jsonl"
        assert spool.exists() and spool.stat().st_size > 0
        during = pg.wait_row(number, lambda r: True)
        assert during.survey_state == "started" and pg.answers(row.uniqueid) == {"csat": 4}
    finally:
        pg.proxy.restore()
    final = pg.wait_row(
        number, lambda r: r.survey_state == "completed" and r.ended_at is not None, timeout=20
    )
    assert pg.answers(final.uniqueid) == {"csat": 4, "fcr": 1, "nps": 7}
    assert final.answers_count == 3
