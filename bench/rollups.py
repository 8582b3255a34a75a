"""Rollup benchmark: a 30-day per-agent report from the daily rollups vs a GROUP BY over the raw answers.

Usage: .venv/bin/python bench/rollups.py [--answers 10000000] [--reload] [--db sqlite --db postgresql]
                                         [--data-dir DIR] [--pg-url URL] [--tz Europe/Berlin] [--runs 5]
                                         [--skip-rebuild] [--quiet-wait S] [--explain] [--prototype]

Data (``bench/_synthetic.py``): ``--answers`` answers (default 10 M) of 1,000 agents in 50 teams on 50
queues over two years before a fixed "now" (2026-11-23 11:00 UTC), calls in working hours of ``--tz``,
with the whole survey funnel in ``calls``. It is loaded once into a dedicated SQLite file
(``--data-dir``, default /tmp/csat-bench-rollups) and a dedicated PostgreSQL database (``--pg-url``,
default ``csat_bench`` on 127.0.0.1, created if missing), and reused by later runs while the spec and the
row counts match; ``--reload`` forces a fresh load. The schema is ``ivr.migrate.upgrade``'s; the load
drops the secondary indexes, bulk-inserts (SQLite: executemany, synchronous=OFF, no journal; PostgreSQL:
COPY) and creates them again, then ANALYZEs (and VACUUMs on PostgreSQL).

Per database, in one run:

* ``scoring.rollups.rebuild`` from scratch (time, days, rollup rows), then ANALYZE (PostgreSQL: VACUUM
  ANALYZE, which autovacuum would have done long before anyone reads rollups days old);
* the measured report (after waiting up to ``--quiet-wait`` s for the shared machine to be idle): by agent,
  the 30 local days ending yesterday (all rolled up), once cold (``t_quantile``'s cache cleared) and then
  ``--runs`` times interleaved, best and median, of
    - rollups: ``scoring.report.build_report(..., refresh=False)``, everything incl. figures and ranking;
    - naive: one ``SELECT agent, question_type, value, count(*) FROM answers`` over the range's UTC bounds
      plus the funnel (``calls_aggregate``) over the same range, into the same ``rows_from_tallies``;
  and the split of each into SQL (reading the tallies) and Python (figures and ranking);
* that both give the same rows (every figure, so the same csat_pct per agent);
* ``refresh`` when nothing changed, and after 1,000 new answers for yesterday and today (then removed);
* peak RSS of this process.

Goal (PostgreSQL): the rollup report <= 0.2 s and >= 20x faster than the naive one. Prints PASS/FAIL.
``--explain`` prints the plans (EXPLAIN ANALYZE on PostgreSQL) of the statements both paths run;
``--prototype`` measures candidate fixes in this process only (see ``prototypes``).
"""

from __future__ import annotations

import argparse
import functools
import io
import math
import os
import resource
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _synthetic as syn  # noqa: E402
from sqlalchemy import (  # noqa: E402
    Engine,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import make_url  # noqa: E402

from ivr.db import make_engine  # noqa: E402
from ivr.migrate import upgrade  # noqa: E402
from ivr.models import (  # noqa: E402
    MAX_VALUE,
    VALUE_COLUMNS,
    Answer,
    AnswerCumulative,
    AnswerDaily,
    Call,
    CallCumulative,
    CallDaily,
)
from ivr.settings import Settings  # noqa: E402
from scoring import intervals, rollups  # noqa: E402
from scoring.figures import FUNNEL_FIELDS, Funnel, Tally, figures_for  # noqa: E402
from scoring.periods import local_day_bounds  # noqa: E402
from scoring.report import ReportRow, build_report, rows_from_tallies  # noqa: E402
from scoring.tallies import UNKNOWN, GroupKey, ReportQuery, load_tallies  # noqa: E402

NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/csat_bench"
DEFAULT_DATA_DIR = "/tmp/csat-bench-rollups"
GOAL_S = 0.2
GOAL_RATIO = 20.0
REPORT_DAYS = 30
INCREMENT = 1000
INCREMENT_PREFIX = "bench-inc-"
META = "bench_meta"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--answers", type=int, default=10_000_000, help="answer rows to load (default 10 M)")
    p.add_argument("--reload", action="store_true", help="drop the stored data and load it again")
    p.add_argument("--db", action="append", choices=("sqlite", "postgresql"), help="default: both")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where the SQLite file lives")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a PostgreSQL database for the bench only")
    p.add_argument("--tz", default="Europe/Berlin", help="the call centre's time zone")
    p.add_argument("--runs", type=int, default=5, help="timed runs of each report (after one cold run)")
    p.add_argument("--skip-rebuild", action="store_true", help="keep rollups built by an earlier run")
    p.add_argument(
        "--quiet-wait", type=float, default=900, help="wait up to this many s for an idle machine (0: don't)"
    )
    p.add_argument("--explain", action="store_true", help="print the query plans of both paths")
    p.add_argument("--prototype", action="store_true", help="also measure candidate fixes (bench DB only)")
    return p.parse_args()


# ----------------------------------------------------------------------------------------- helpers
def peak_rss_mib() -> float:
    """Peak RSS of this process over the whole run (getrusage)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_phase_peak() -> bool:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM to the current RSS)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def phase_peak_mib() -> float:
    """VmHWM: the peak RSS since the last ``reset_phase_peak`` (or since start)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def clear_t_cache() -> None:
    """Forget cached t quantiles (``intervals.t_quantile`` is memoized): what a fresh process pays."""
    clear = getattr(intervals.t_quantile, "cache_clear", None)
    if clear is not None:
        clear()


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def busy_percent(since: tuple[int, int]) -> float:
    """Whole-machine CPU busy % (all cores = 100 %) since ``since``."""
    busy, total = cpu_ticks()
    return 100.0 * (busy - since[0]) / max(1, total - since[1])


def wait_for_quiet(max_wait_s: float, threshold: float = 25.0) -> str:
    """Timings on a shared machine mean little while others' test suites run: wait for a quiet spell.

    Quiet = the machine was under ``threshold`` % busy over 3 s. Gives up after ``max_wait_s``.
    """
    t0 = time.monotonic()
    while True:
        start = cpu_ticks()
        time.sleep(3)
        busy = busy_percent(start)
        waited = time.monotonic() - t0
        if busy < threshold or waited >= max_wait_s:
            state = "quiet" if busy < threshold else "NOT quiet"
            return f"{state}: machine {busy:.0f} % busy before the timed runs (waited {waited:.0f} s)"
        time.sleep(7)


@dataclass
class Timings:
    values: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def __str__(self) -> str:
        return f"best {ms(self.best)}  median {ms(self.median)}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


@dataclass
class Target:
    """One database under test."""

    name: str  # sqlite | postgresql
    url: str

    def engine(self) -> Engine:
        """csat's own engine (SQLite: WAL and busy timeout; PostgreSQL: its pool), as reports get it."""
        return make_engine(self.url)

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///"))


# ---------------------------------------------------------------------------------- stored data set
def ensure_pg_database(url: str) -> None:
    """Create the bench database if missing (from the server's ``postgres`` maintenance database)."""
    u = make_url(url)
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": u.database})
            if exists.scalar() is None:
                conn.execute(text(f'CREATE DATABASE "{u.database}"'))
    finally:
        admin.dispose()


def read_meta(target: Target) -> dict[str, str]:
    if target.name == "sqlite" and not target.sqlite_path.exists():
        return {}
    engine = target.engine()
    try:
        with engine.connect() as conn:
            if not engine.dialect.has_table(conn, META):
                return {}
            return {k: v for k, v in conn.execute(text(f"SELECT key, value FROM {META}"))}
    finally:
        engine.dispose()


def remove_increment(engine: Engine) -> int:
    """Rows the incremental-refresh step adds; a run interrupted there may have left them."""
    with engine.begin() as conn:
        n = conn.execute(delete(Answer).where(Answer.call_uniqueid.like(f"{INCREMENT_PREFIX}%"))).rowcount  # type: ignore[attr-defined]
        conn.execute(delete(Call).where(Call.uniqueid.like(f"{INCREMENT_PREFIX}%")))  # type: ignore[attr-defined]
    return n


def stored_is_current(target: Target, spec: syn.Spec) -> bool:
    meta = read_meta(target)
    if meta.get("fingerprint") != spec.fingerprint():
        return False
    engine = target.engine()
    try:
        remove_increment(engine)
        with engine.connect() as conn:
            answers = conn.execute(select(func.count()).select_from(Answer)).scalar()
            calls = conn.execute(select(func.count()).select_from(Call)).scalar()
    finally:
        engine.dispose()
    return str(answers) == meta.get("answers") and str(calls) == meta.get("calls")


def reset(target: Target) -> None:
    """An empty database with csat's schema (``ivr.migrate.upgrade``)."""
    if target.name == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{target.sqlite_path}{suffix}").unlink(missing_ok=True)
    else:
        engine = create_engine(target.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        finally:
            engine.dispose()
    upgrade(target.url)


class SqliteLoader:
    """executemany in large transactions, no journal and no fsync: a crash mid-load means ``--reload``."""

    def __init__(self, target: Target, spec: syn.Spec) -> None:
        self.con = sqlite3.connect(target.sqlite_path, isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-1048576", "temp_store=MEMORY"):
            self.con.execute(f"PRAGMA {pragma}")
        self.indexes = [
            (name, sql)
            for name, sql in self.con.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                " AND tbl_name IN ('answers', 'calls')"
            )
        ]
        for name, _ in self.indexes:
            self.con.execute(f'DROP INDEX "{name}"')
        self.calls_sql = insert_sql("calls", syn.CALL_COLUMNS, "?")
        self.answers_sql = insert_sql("answers", syn.ANSWER_COLUMNS, "?")
        self.con.execute("BEGIN")
        self.con.executemany(insert_sql("agents", syn.AGENT_COLUMNS, "?"), agent_rows_text(spec))
        self.days = 0

    def add(self, batch: syn.DayBatch) -> None:
        self.con.executemany(self.calls_sql, batch.calls)
        self.con.executemany(self.answers_sql, batch.answers)
        self.days += 1
        if self.days % 60 == 0:
            self.con.execute("COMMIT")
            self.con.execute("BEGIN")

    def finish(self, meta: dict[str, str]) -> None:
        self.con.execute("COMMIT")
        for _, sql in self.indexes:
            self.con.execute(sql)
        self.con.execute("ANALYZE")
        write_meta_sqlite(self.con, meta)
        self.con.close()


class PgLoader:
    """COPY one day at a time from an in-memory text buffer; secondary indexes built after the load."""

    def __init__(self, target: Target, spec: syn.Spec) -> None:
        self.engine = create_engine(target.url)
        self.raw = self.engine.raw_connection()
        self.cur = self.raw.cursor()
        self.cur.execute("SET synchronous_commit = off")
        self.cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename IN ('answers', 'calls') AND indexname LIKE 'ix_%'"
        )
        self.indexes = list(self.cur.fetchall())
        for name, _ in self.indexes:
            self.cur.execute(f'DROP INDEX "{name}"')
        self.copy("agents", syn.AGENT_COLUMNS, agent_rows_text(spec))
        self.days = 0

    def copy(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        buf = io.StringIO("".join(map(copy_line, rows)))
        self.cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buf)

    def add(self, batch: syn.DayBatch) -> None:
        self.copy("calls", syn.CALL_COLUMNS, batch.calls)
        self.copy("answers", syn.ANSWER_COLUMNS, batch.answers)
        self.days += 1
        if self.days % 30 == 0:
            self.raw.commit()

    def finish(self, meta: dict[str, str]) -> None:
        self.cur.execute("SET maintenance_work_mem = '1GB'")
        for _, sql in self.indexes:
            self.cur.execute(sql)
        self.cur.execute(
            "SELECT setval(pg_get_serial_sequence('answers', 'id'), (SELECT max(id) FROM answers))"
        )
        self.cur.execute(f"CREATE TABLE {META} (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)")
        self.cur.executemany(f"INSERT INTO {META} VALUES (%s, %s)", list(meta.items()))
        self.raw.commit()
        self.raw.close()
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        self.engine.dispose()


def insert_sql(table: str, columns: tuple[str, ...], mark: str) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


def agent_rows_text(spec: syn.Spec) -> list[tuple[Any, ...]]:
    return [(*row[:4], row[4].isoformat(sep=" ", timespec="microseconds")) for row in syn.agent_rows(spec)]


def copy_value(v: Any) -> str:
    if v is None:
        return "\\N"
    if v is True:
        return "t"
    if v is False:
        return "f"
    return str(v)


def copy_line(row: tuple[Any, ...]) -> str:
    """COPY text format; the generated values hold no tab, newline or backslash."""
    return "\t".join(map(copy_value, row)) + "\n"


def write_meta_sqlite(con: sqlite3.Connection, meta: dict[str, str]) -> None:
    con.execute(f"CREATE TABLE {META} (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)")
    con.executemany(f"INSERT INTO {META} VALUES (?, ?)", list(meta.items()))


def load(targets: list[Target], spec: syn.Spec) -> dict[str, float]:
    """One pass of the generator feeds every target that needs the data; returns seconds per phase."""
    t_all = time.perf_counter()
    seconds: dict[str, float] = {}
    loaders: list[tuple[Target, Any]] = []
    for target in targets:
        t0 = time.perf_counter()
        reset(target)
        if target.name == "sqlite":
            loaders.append((target, SqliteLoader(target, spec)))
        else:
            loaders.append((target, PgLoader(target, spec)))
        seconds[f"{target.name} schema"] = time.perf_counter() - t0
    calls = answers = 0
    gen = 0.0
    t_gen = time.perf_counter()
    batches = syn.generate(spec)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        gen += time.perf_counter() - t0
        if batch is None:
            break
        calls += len(batch.calls)
        answers += len(batch.answers)
        for target, loader in loaders:
            t0 = time.perf_counter()
            loader.add(batch)
            seconds[f"{target.name} insert"] = (
                seconds.get(f"{target.name} insert", 0.0) + time.perf_counter() - t0
            )
        if batch.day.day == 1:
            print(
                f"  … {batch.day}  {answers:>10,} answers  {time.perf_counter() - t_gen:6.0f} s", flush=True
            )
    seconds["generate"] = gen
    meta = {
        "fingerprint": spec.fingerprint(),
        "answers": str(answers),
        "calls": str(calls),
        "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for target, loader in loaders:
        t0 = time.perf_counter()
        loader.finish({**meta, "load_seconds": f"{seconds.get(f'{target.name} insert', 0.0):.0f}"})
        seconds[f"{target.name} index+analyze"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_all
    return seconds


# ------------------------------------------------------------------------------------------ reports
def report_query(spec: syn.Spec) -> ReportQuery:
    yesterday = spec.today - timedelta(days=1)
    return ReportQuery(by="agent", date_from=yesterday - timedelta(days=REPORT_DAYS - 1), date_to=yesterday)


def naive_tallies(engine: Engine, tz: ZoneInfo, query: ReportQuery) -> dict[GroupKey, Tally]:
    """The report's counts straight from the raw rows: one GROUP BY over answers, one over calls."""
    start, _ = local_day_bounds(query.date_from, tz)
    _, end = local_day_bounds(query.date_to, tz)
    agent = func.coalesce(Answer.agent, "")
    answers = (
        select(agent, Answer.question_type, Answer.value, func.count())
        .where(Answer.answered_at >= start, Answer.answered_at < end)  # type: ignore[arg-type,operator]
        .group_by(agent, Answer.question_type, Answer.value)
    )
    tallies: dict[GroupKey, Tally] = {}
    with engine.connect() as conn:
        for name, qtype, value, n in conn.execute(answers):
            tally = tallies.setdefault((name or UNKNOWN, None), Tally())
            if qtype == "comment":
                tally.add_answers("comment", {0: n})
            elif value is not None and 0 <= value <= MAX_VALUE:
                tally.add_answers(qtype, {value: n})
        for row in conn.execute(rollups.calls_aggregate(start, end)).mappings():
            tally = tallies.setdefault((row["agent"] or UNKNOWN, None), Tally())
            tally.funnel.add(Funnel(**{f: int(row[f] or 0) for f in FUNNEL_FIELDS}))
    return tallies


@dataclass
class Paths:
    """The two ways to the same report, and their SQL/Python split."""

    engine: Engine
    settings: Settings
    query: ReportQuery

    def rollup_report(self) -> tuple[list[ReportRow], list[ReportRow]]:
        report = build_report(self.engine, self.settings, self.query, now=NOW, refresh=False)
        return report.rows, report.totals

    def rollup_tallies(self) -> dict[GroupKey, Tally]:
        tz = self.settings.tz
        return load_tallies(
            self.engine, tz, self.query, rolled_through=rollups.rolled_through(self.engine, tz)
        )

    def naive_report(self) -> tuple[list[ReportRow], list[ReportRow]]:
        return rows_from_tallies(self.naive_tallies(), self.query, self.settings)

    def naive_tallies(self) -> dict[GroupKey, Tally]:
        return naive_tallies(self.engine, self.settings.tz, self.query)

    def python_part(self, tallies: dict[GroupKey, Tally]) -> Any:
        return rows_from_tallies(tallies, self.query, self.settings)


@dataclass
class Measured:
    rows: int = 0
    cold_rollup: float = 0.0
    cold_naive: float = 0.0
    rollup: Timings = field(default_factory=Timings)
    naive: Timings = field(default_factory=Timings)
    rollup_sql: Timings = field(default_factory=Timings)
    naive_sql: Timings = field(default_factory=Timings)
    python: Timings = field(default_factory=Timings)
    python_cold: Timings = field(default_factory=Timings)
    peak_mib: float = 0.0
    machine: str = ""
    long_range: Timings = field(default_factory=Timings)
    equal_rows: bool = False
    equal_csat: bool = False
    csat_compared: int = 0


def measure_reports(paths: Paths, runs: int) -> Measured:
    m = Measured()
    clear_t_cache()
    m.cold_rollup, (rows_r, totals_r) = timed(paths.rollup_report)
    clear_t_cache()
    m.cold_naive, (rows_n, totals_n) = timed(paths.naive_report)
    for _ in range(runs):  # interleaved, so drift on a shared machine hits both paths alike
        m.rollup.values.append(timed(paths.rollup_report)[0])
        m.naive.values.append(timed(paths.naive_report)[0])
        m.rollup_sql.values.append(timed(paths.rollup_tallies)[0])
        m.naive_sql.values.append(timed(paths.naive_tallies)[0])
    tallies = paths.rollup_tallies()
    for _ in range(runs):
        m.python.values.append(timed(lambda: paths.python_part(tallies))[0])

    def python_cold() -> Any:
        clear_t_cache()
        return paths.python_part(tallies)

    for _ in range(runs):
        m.python_cold.values.append(timed(python_cold)[0])
    year = ReportQuery(
        by="agent", date_from=paths.query.date_to - timedelta(days=364), date_to=paths.query.date_to
    )
    long_paths = Paths(paths.engine, paths.settings, year)
    for _ in range(runs):
        m.long_range.values.append(timed(long_paths.rollup_report)[0])
    m.rows = len(rows_r)
    m.equal_rows = rows_r == rows_n and totals_r == totals_n
    csat_r = {r.group: r.csat_pct for r in rows_r}
    csat_n = {r.group: r.csat_pct for r in rows_n}
    m.equal_csat = csat_r == csat_n
    m.csat_compared = sum(1 for v in csat_r.values() if v is not None)
    return m


# ------------------------------------------------------------------------------------ refresh costs
def increment_rows(spec: syn.Spec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """1,000 answers (half yesterday afternoon, half this last hour) on completed calls, as csat stores."""
    tz = spec.tz
    agents = syn.make_agents(spec)
    yesterday = spec.today - timedelta(days=1)
    y_start, _ = local_day_bounds(yesterday, tz)
    calls: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    now = NOW.replace(tzinfo=None)
    left = INCREMENT
    i = 0
    while left:
        k = min(3, left)
        base = (
            (y_start + timedelta(hours=14, seconds=20 * i))
            if i % 2 == 0
            else now - timedelta(seconds=3000 - 8 * i)
        )
        agent = agents[(i * 37) % len(agents)]
        uid = f"{INCREMENT_PREFIX}{i}"
        calls.append(
            {
                "uniqueid": uid,
                "linkedid": uid,
                "queue": agent.queues[0],
                "agent": agent.name,
                "connected_at": base - timedelta(minutes=4),
                "ended_at": base - timedelta(seconds=20),
                "offer": True,
                "offer_reason": "sampled",
                "survey_name": syn.SURVEY,
                "survey_state": "completed" if k == 3 else "partial",
                "survey_started_at": base - timedelta(seconds=19),
                "survey_ended_at": base + timedelta(seconds=30),
                "answers_count": k,
                "updated_at": base + timedelta(seconds=30),
            }
        )
        for j, (key, qtype, position) in enumerate(syn.QUESTIONS[:k]):
            answers.append(
                {
                    "call_uniqueid": uid,
                    "linkedid": uid,
                    "queue": agent.queues[0],
                    "agent": agent.name,
                    "survey": syn.SURVEY,
                    "question": key,
                    "question_type": qtype,
                    "position": position,
                    "value": (4, 1, 9)[j],
                    "answered_at": base + timedelta(seconds=8 * j),
                }
            )
        left -= k
        i += 1
    return calls, answers


@dataclass
class RefreshCost:
    noop: Timings = field(default_factory=Timings)
    noop_days: int = 0
    incremental: float = 0.0
    incremental_days: int = 0
    restore: float = 0.0
    old_day: float = 0.0


def measure_refresh(engine: Engine, spec: syn.Spec, runs: int) -> RefreshCost:
    tz = spec.tz
    cost = RefreshCost()
    for _ in range(runs):
        t, cost.noop_days = timed(lambda: rollups.refresh(engine, tz, now=NOW))
        cost.noop.values.append(t)
    calls, answers = increment_rows(spec)
    try:
        with engine.begin() as conn:
            conn.execute(insert(Call), calls)
            conn.execute(insert(Answer), answers)
        cost.incremental, cost.incremental_days = timed(lambda: rollups.refresh(engine, tz, now=NOW))
    finally:
        remove_increment(engine)
        yesterday = spec.today - timedelta(days=1)
        cost.restore, _ = timed(lambda: rollups.recompute_days(engine, tz, [yesterday], today=spec.today))
    a_year_ago = spec.today - timedelta(days=365)
    cost.old_day, _ = timed(lambda: rollups.recompute_days(engine, tz, [a_year_ago], today=spec.today))
    return cost


# ------------------------------------------------------------------------------------------ explain
@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and parameters) the engine sends while the block runs."""
    seen: list[tuple[str, Any]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def explain(target: Target, engine: Engine, paths: Paths) -> None:
    for label, fn in (("rollups", paths.rollup_report), ("naive", paths.naive_report)):
        with captured(engine) as seen:
            fn()
        for statement, params in seen:
            if "rollup_state" in statement:
                continue
            print(f"\n--- {target.name} {label}: {' '.join(statement.split())[:160]}…")
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                prefix = (
                    "EXPLAIN (ANALYZE, BUFFERS, SETTINGS) "
                    if target.name == "postgresql"
                    else "EXPLAIN QUERY PLAN "
                )
                cur.execute(prefix + statement, params)
                for row in cur.fetchall():
                    print("   ", " | ".join(str(c) for c in row))
            finally:
                raw.close()


# ---------------------------------------------------------------------------------------- prototypes
@contextmanager
def patched_t_quantile(replacement: Callable[[float, int], float]) -> Iterator[None]:
    """Prototype only: swap ``intervals.t_quantile`` (``t_interval`` looks it up at call time)."""
    original = intervals.t_quantile
    intervals.t_quantile = replacement  # type: ignore[assignment]
    try:
        yield
    finally:
        intervals.t_quantile = original  # type: ignore[assignment]


_EXACT_T_QUANTILE = intervals.t_quantile


def fast_t_quantile(p: float, df: int) -> float:
    """Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5) plus one Newton step on the exact CDF.

    One ``t_cdf`` evaluation instead of ~40 in the bisection; small df keep the exact bisection.
    """
    if df < 10:
        return _EXACT_T_QUANTILE(p, df)
    z = NormalDist().inv_cdf(p)
    z2, v = z * z, float(df)
    t = (
        z
        + (z2 + 1) * z / (4 * v)
        + ((5 * z2 + 16) * z2 + 3) * z / (96 * v**2)
        + (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / (384 * v**3)
        + ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / (92160 * v**4)
    )
    log_c = math.lgamma((v + 1) / 2) - math.lgamma(v / 2) - 0.5 * math.log(v * math.pi)
    pdf = math.exp(log_c - (v + 1) / 2 * math.log1p(t * t / v))
    return t - (intervals.t_cdf(t, df) - p) / pdf


def max_float_diff(a: list[ReportRow], b: list[ReportRow]) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        other = y.as_dict()
        for k, v in x.as_dict().items():
            w = other[k]
            if isinstance(v, float) and isinstance(w, float):
                worst = max(worst, abs(v - w))
            elif v != w:
                return math.inf
    return worst


def diffed_running_totals(engine: Engine, query: ReportQuery) -> dict[GroupKey, Tally]:
    """Prototype of ``_from_running_totals`` for a per-agent report without period or filters.

    The subtraction (totals at the last day − totals the day before the first) is done in SQL by joining
    the two days, and only agents whose totals changed come back, as plain tuples: half the rows, no
    per-row dicts.
    """
    before, end = query.date_from - timedelta(days=1), query.date_to
    tallies: dict[GroupKey, Tally] = {}
    with engine.connect() as conn:
        for table, keys, cols in (
            (AnswerCumulative.__table__, ("agent", "question"), ("n", *VALUE_COLUMNS)),  # type: ignore[attr-defined]
            (CallCumulative.__table__, ("agent",), FUNNEL_FIELDS),  # type: ignore[attr-defined]
        ):
            e, s = table.alias("e"), table.alias("s")
            on = and_(s.c.day == before, *[s.c[k] == e.c[k] for k in keys])
            extra = [e.c.question_type] if "question" in keys else []
            stmt = (
                select(e.c.agent, *extra, *[(e.c[c] - func.coalesce(s.c[c], 0)) for c in cols])
                .select_from(e.outerjoin(s, on))
                .where(e.c.day == end, e.c[cols[0]] != func.coalesce(s.c[cols[0]], 0))
            )
            for row in conn.execute(stmt):
                tally = tallies.setdefault((row[0] or UNKNOWN, None), Tally())
                if extra:
                    qtype, values = row[1], row[3:]
                    tally.add_answers(qtype, {0: row[2]} if qtype == "comment" else dict(enumerate(values)))
                else:
                    tally.funnel.add(Funnel(*row[1:]))
    return tallies


def prototypes(paths: Paths, runs: int) -> list[tuple[str, str]]:
    """Candidate fixes, measured in this process only (the real ones belong in scoring/)."""
    out: list[tuple[str, str]] = []
    tallies = paths.rollup_tallies()
    clear_t_cache()
    exact_rows, _ = paths.python_part(tallies)
    info = getattr(intervals.t_quantile, "cache_info", None)
    if info is not None:
        out.append(("distinct t quantiles (df) in this report", str(info().currsize)))
    fast = functools.cache(fast_t_quantile)

    def cold_fast() -> Any:
        fast.cache_clear()
        return paths.python_part(tallies)

    with patched_t_quantile(fast):
        t = Timings([timed(cold_fast)[0] for _ in range(runs)])
        out.append(("Python, t cold, t_quantile Cornish-Fisher + 1 Newton", str(t)))
        rows, _ = paths.python_part(tallies)
        out.append(("  max |difference| of any figure vs exact", f"{max_float_diff(exact_rows, rows):.2e}"))
    t = Timings([timed(lambda: [figures_for(x) for x in tallies.values()])[0] for _ in range(runs)])
    out.append(("Python: figures_for alone (t cache warm)", str(t)))
    if paths.query.by == "agent" and paths.query.period is None:
        same = diffed_running_totals(paths.engine, paths.query) == tallies
        t = Timings([timed(lambda: diffed_running_totals(paths.engine, paths.query))[0] for _ in range(runs)])
        out.append(("SQL rollups, difference taken in SQL", f"{t}   same tallies: {'yes' if same else 'NO'}"))
        t = Timings(
            [
                timed(lambda: paths.python_part(diffed_running_totals(paths.engine, paths.query)))[0]
                for _ in range(runs)
            ]
        )
        out.append(("  whole report with it (t warm)", str(t)))
    return out


# --------------------------------------------------------------------------------------------- main
@dataclass
class Result:
    target: str
    load: str
    rebuild_s: float
    rebuild_days: int
    rollup_rows: dict[str, int]
    analyze_s: float
    rebuild_peak_mib: float
    measured: Measured
    refresh: RefreshCost
    extra: list[tuple[str, str]]


def rebuild(target: Target, engine: Engine, spec: syn.Spec, skip: bool) -> tuple[float, int, float]:
    tz = spec.tz
    if skip and rollups.rolled_through(engine, tz) == spec.today - timedelta(days=1):
        return 0.0, 0, 0.0
    done = [0.0]

    def progress(i: int, n: int) -> None:
        if i % 100 == 0 or i == n:
            print(
                f"  … rebuild {target.name}: day {i}/{n}  {time.perf_counter() - done[0]:6.0f} s", flush=True
            )

    done[0] = time.perf_counter()
    t_rebuild, days = timed(lambda: rollups.rebuild(engine, tz, now=NOW, progress=progress))
    t0 = time.perf_counter()
    if target.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE rollup_answers_daily"))
            conn.execute(text("VACUUM ANALYZE rollup_calls_daily"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return t_rebuild, days, time.perf_counter() - t0


def run_target(target: Target, spec: syn.Spec, load_note: str, args: argparse.Namespace) -> Result:
    settings = Settings(timezone=spec.timezone)
    engine = target.engine()
    try:
        remove_increment(engine)
        print(f"\n[{target.name}] rollups rebuild …", flush=True)
        reset_phase_peak()
        t_rebuild, days, t_analyze = rebuild(target, engine, spec, args.skip_rebuild)
        rebuild_peak = phase_peak_mib()
        with engine.connect() as conn:
            counts = {
                t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar() or 0  # type: ignore[attr-defined]
                for t in (AnswerDaily, CallDaily, AnswerCumulative, CallCumulative)
            }
        print(f"[{target.name}] reports …", flush=True)
        paths = Paths(engine, settings, report_query(spec))
        measured_quiet = wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else "not waited"
        reset_phase_peak()
        ticks = cpu_ticks()
        measured = measure_reports(paths, args.runs)
        measured.machine = (
            f"{measured_quiet}; {busy_percent(ticks):.0f} % busy during them, loadavg {loadavg()}"
        )
        measured.peak_mib = phase_peak_mib()
        print(f"[{target.name}] refresh …", flush=True)
        refresh = measure_refresh(engine, spec, args.runs)
        extra: list[tuple[str, str]] = []
        if args.prototype:
            quiet = wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else "not waited"
            extra = [("machine", quiet), *prototypes(paths, args.runs)]
        if args.explain:
            explain(target, engine, paths)
        return Result(
            target.name,
            load_note,
            t_rebuild,
            days,
            counts,
            t_analyze,
            rebuild_peak,
            measured,
            refresh,
            extra,
        )
    finally:
        engine.dispose()


def print_result(r: Result, query: ReportQuery) -> None:
    m = r.measured
    print(f"\n=== {r.target} ===")
    print(f"data:                 {r.load}")
    if r.rebuild_days:
        print(
            f"rollups rebuild:      {r.rebuild_s:8.1f} s for {r.rebuild_days} days "
            f"({r.rebuild_s / r.rebuild_days * 1000:.0f} ms/day); then ANALYZE {r.analyze_s:.1f} s; "
            f"peak RSS {r.rebuild_peak_mib:.0f} MiB"
        )
    else:
        print("rollups rebuild:      skipped (--skip-rebuild, rollups current)")
    print("rollup rows:          " + "  ".join(f"{k} {v:,}" for k, v in r.rollup_rows.items()))
    print(f"report:               by agent, {query.date_from} .. {query.date_to} ({REPORT_DAYS} local days)")
    print(f"machine:              {m.machine}")
    print(f"rows:                 {m.rows} agents ({m.csat_compared} with a CSAT %)")
    print(f"cold (first run):     rollups {ms(m.cold_rollup)}   naive {ms(m.cold_naive)}")
    print(f"time rollups:         {m.rollup}")
    print(f"time naive:           {m.naive}")
    print(
        f"ratio naive/rollups:  best {m.naive.best / m.rollup.best:6.2f}x   "
        f"median {m.naive.median / m.rollup.median:6.2f}x"
    )
    print(f"  SQL rollups:        {m.rollup_sql}   (load_tallies)")
    print(f"  SQL naive:          {m.naive_sql}   (GROUP BY answers + calls_aggregate)")
    print(f"  SQL ratio:          best {m.naive_sql.best / m.rollup_sql.best:6.2f}x")
    print(f"  Python (both):      {m.python}   (rows_from_tallies: figures + ranking, t cache warm)")
    print(f"  Python, t cold:     {m.python_cold}   (the same with intervals.t_quantile's cache cleared)")
    print(f"time rollups 365 d:   {m.long_range}   (the same report over 365 days, for scale)")
    print(
        f"results equal:        {'yes' if m.equal_csat else 'NO'} (csat_pct per agent); "
        f"every figure: {'yes' if m.equal_rows else 'NO'}"
    )
    print(f"peak RSS, reports:    {m.peak_mib:.0f} MiB (VmHWM while the reports above ran)")
    f = r.refresh
    print(f"refresh, no change:   {f.noop}   ({f.noop_days} days recomputed)")
    print(
        f"refresh, +{INCREMENT} answers: {ms(f.incremental)}   ({f.incremental_days} day recomputed; "
        f"restore {ms(f.restore)})"
    )
    print(
        f"recompute 1 day a year back: {f.old_day:5.1f} s   (an import of old answers; running totals redone)"
    )
    for label, value in r.extra:
        print(f"prototype: {label:50s} {value}")


def main() -> int:
    args = parse_args()
    spec = syn.Spec(answers=args.answers, now=NOW, timezone=args.tz)
    names = args.db or ["sqlite", "postgresql"]
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    targets = []
    for name in names:
        if name == "sqlite":
            targets.append(Target("sqlite", f"sqlite:///{(data_dir / 'rollups-bench.sqlite3').resolve()}"))
        else:
            ensure_pg_database(args.pg_url)
            targets.append(Target("postgresql", args.pg_url))
    print(
        f"rollups bench  {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC  "
        f"loadavg {loadavg()}  {os.cpu_count()} cores"
    )
    print(
        f"spec: {args.answers:,} answers, {spec.agents} agents, {spec.teams} teams, {spec.queues} queues, "
        f"{spec.days} days to {spec.today} ({spec.timezone}), now {NOW:%Y-%m-%d %H:%M} UTC"
    )

    notes: dict[str, str] = {}
    todo = []
    for target in targets:
        if not args.reload and stored_is_current(target, spec):
            upgrade(target.url)  # migrations newer than the stored copy, as csat would run them
            meta = read_meta(target)
            notes[target.name] = (
                f"reused ({int(meta['answers']):,} answers, {int(meta['calls']):,} calls; "
                f"loaded {meta['loaded_at']}, insert took {meta['load_seconds']} s)"
            )
        else:
            todo.append(target)
    if todo:
        print(f"loading {', '.join(t.name for t in todo)} …", flush=True)
        seconds = load(todo, spec)
        print("load: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
        for target in todo:
            meta = read_meta(target)
            insert_s, index_s = seconds[f"{target.name} insert"], seconds[f"{target.name} index+analyze"]
            notes[target.name] = (
                f"loaded now: {int(meta['answers']):,} answers, {int(meta['calls']):,} calls; "
                f"generate {seconds['generate']:.0f} s (shared), insert {insert_s:.0f} s, "
                f"indexes+analyze {index_s:.0f} s; total load {seconds['total']:.0f} s"
            )
    print(f"peak RSS so far (load phase): {phase_peak_mib():.0f} MiB", flush=True)

    results = [run_target(t, spec, notes[t.name], args) for t in targets]
    query = report_query(spec)
    for r in results:
        print_result(r, query)
    print(f"\npeak RSS (this process, whole run): {peak_rss_mib():.0f} MiB;  loadavg {loadavg()}")
    for r in results:
        if r.target == "postgresql":
            best = r.measured.rollup.best
            ratio = r.measured.naive.best / best
            ok = best <= GOAL_S and ratio >= GOAL_RATIO and r.measured.equal_rows
            print(
                f"goal (PostgreSQL: <= {GOAL_S} s and >= {GOAL_RATIO:.0f}x naive): "
                f"{'PASS' if ok else 'FAIL'} ({best:.3f} s, {ratio:.1f}x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
