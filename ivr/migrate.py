"""``csat db upgrade``: schema changes are alembic migrations, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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
    """True when the database is at the newest migration (an older schema lacks tables csat now uses)."""
    engine = make_engine(url)
    try:
        if "alembic_version" not in set(inspect(engine).get_table_names()):
            return False
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        return current == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    finally:
        engine.dispose()
