"""Shared fixtures for the unit and storage tests: one database fixture, run on SQLite and PostgreSQL.

Only the database lives here. The Asterisk 16 + SIPp rig fixtures (tests marked ``asterisk``) live in
their own module and are pulled in with ``pytest_plugins`` by the engineer who owns them.

``db_url`` / ``engine`` are parametrized over ``sqlite`` (a file in the test's tmp dir) and
``postgresql`` (``127.0.0.1:5432``, database ``test``, user ``postgres``; a fresh schema per test,
selected through libpq's ``options=-csearch_path=...`` in the URL, so alembic, ``make_engine`` and the
CLI all land in it). Tables are always built by ``ivr.migrate.upgrade``: every storage test also
proves that the migration works on both databases. PostgreSQL being unreachable is a failure, never
a skip: CI has it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from ivr.db import make_engine
from ivr.migrate import upgrade

# The Asterisk rig fixtures (owned by another engineer) live in tests/asterisk_rig.py.
pytest_plugins = ["tests.asterisk_rig", "tests.web_support"]

PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"

_pg_error: list[str] = []  # remembered so that a down server costs one connect timeout, not one per test
_pg_checked: list[bool] = []


def _pg_admin() -> Engine:
    if _pg_error:
        pytest.fail(_pg_error[0], pytrace=False)
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    if not _pg_checked:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            engine.dispose()
            _pg_error.append(
                f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({str(exc).splitlines()[0]}). "
                "The storage tests must run on PostgreSQL too: start it (trust auth, database 'test')."
            )
            pytest.fail(_pg_error[0], pytrace=False)
        _pg_checked.append(True)
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A URL to an empty, migrated database, private to this test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'csat.sqlite3'}"
        upgrade(url)
        yield url
        return

    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_ADMIN_URL}?options={quote(f'-csearch_path={schema}', safe='')}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """``ivr.db.make_engine`` on the migrated test database (SQLite file or a private PostgreSQL schema)."""
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()
