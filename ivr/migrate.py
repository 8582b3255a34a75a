"""``csat db upgrade``: schema changes are alembic migrations, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from ivr.db import make_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def schema_is_current(url: str) -> bool:
    engine = make_engine(url)
    try:
        wanted = {
            "calls",
            "answers",
            "agents",
            "rollup_answers_daily",
            "rollup_calls_daily",
            "alembic_version",
        }
        return wanted <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
