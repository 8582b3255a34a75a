"""Scheduled exports end to end, on SQLite and PostgreSQL: the file in the folder, the mail as a real SMTP
server (aiosmtpd on 127.0.0.1) receives it, and the persistent schedule in the csat database catching up
a run missed while csat was down exactly once.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import logging
import pickle
import re
import shutil
import socket
import ssl
import subprocess
import time as clock
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, inspect, text

from ivr import db
from ivr.db import make_engine
from ivr.models import SurveyState
from ivr.settings import ExportJob, ScoringSettings, Settings, SmtpSettings, load_settings
from scoring import scheduled_exports as se
from scoring.exports import CSV_COLUMNS, render
from scoring.scheduled_exports import (
    ExportError,
    ExportJobStore,
    add_export_jobs,
    crontab_trigger,
    export_now,
    export_triggers,
    run_export,
    scheduled_export,
)
from scoring.tallies import ReportQuery

TZ = "Europe/Berlin"
# Monday 23 Nov 2026, 08:00 in Berlin: previous_week is 16–22 Nov, yesterday is 22 Nov.
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
WEEK = (date(2026, 11, 16), date(2026, 11, 22))
DOWN_URL = "postgresql+psycopg2://postgres@127.0.0.1:1/x"  # nothing listens on port 1


# -- helpers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sink:
    """An SMTP server's end: every message it accepted, as (mail from, recipients, raw bytes)."""

    port: int = 0
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"

    def parsed(self, i: int = 0) -> EmailMessage:
        return email.message_from_bytes(self.messages[i][2], policy=email.policy.default)  # type: ignore[return-value]


@pytest.fixture
def smtp_sink() -> Iterator[Sink]:
    sink = Sink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def settings_for(
    db_url: str, *exports: ExportJob, smtp: SmtpSettings | None = None, tz: str = TZ
) -> Settings:
    return Settings(
        database_url=db_url,
        timezone=tz,
        scoring=ScoringSettings(min_responses=1),
        exports=list(exports),
        smtp=smtp or SmtpSettings(host="127.0.0.1", port=free_port()),
    )


def store_answer(
    engine: Engine, uid: str, agent: str, value: int, at: datetime, queue: str = "support"
) -> None:
    """One completed survey with one CSAT answer at ``at`` (naive UTC), the way csat stores it."""
    db.upsert_call(
        engine, uid, uid, queue=queue, agent=agent, connected_at=at - timedelta(minutes=5), offer=True
    )
    db.set_survey_state(engine, uid, SurveyState.COMPLETED)
    db.insert_answer(
        engine,
        {
            "call_uniqueid": uid,
            "linkedid": uid,
            "queue": queue,
            "agent": agent,
            "survey": "default",
            "question": "csat",
            "question_type": "csat",
            "position": 1,
            "value": value,
            "answered_at": at,
        },
    )


def seed_week(engine: Engine) -> None:
    """alice 5, 5, 4 and bob 2, 5 in the week of 16–22 Nov (Berlin); carol only just after it."""
    store_answer(engine, "1.1", "alice", 5, datetime(2026, 11, 16, 9, 0))
    store_answer(engine, "1.2", "alice", 5, datetime(2026, 11, 18, 14, 0))
    store_answer(engine, "1.3", "alice", 4, datetime(2026, 11, 22, 22, 30))  # 23:30 Berlin, still the 22nd
    store_answer(engine, "1.4", "bob", 2, datetime(2026, 11, 19, 10, 0))
    store_answer(engine, "1.5", "bob", 5, datetime(2026, 11, 20, 10, 0))
    store_answer(engine, "1.6", "carol", 5, datetime(2026, 11, 22, 23, 30))  # 00:30 Berlin on the 23rd


def csv_rows(data: bytes) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(data.decode()))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    return list(reader)


def attachments(msg: EmailMessage) -> dict[str, bytes]:
    return {part.get_filename() or "": part.get_payload(decode=True) for part in msg.iter_attachments()}  # type: ignore[misc]


def wait_for(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = clock.monotonic() + timeout
    while not condition():
        if clock.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        clock.sleep(0.05)


def rewind(engine: Engine, job_id: str, when: datetime) -> None:
    """Leave the store as a csat that was down over ``when`` leaves it: the next run still at ``when``.

    (Not via a paused scheduler's modify_job: APScheduler 3's loop wakes on shutdown and consumes due
    jobs it can no longer run.)
    """
    with engine.begin() as conn:
        state = pickle.loads(
            conn.execute(
                text("SELECT job_state FROM apscheduler_jobs WHERE id = :i"), {"i": job_id}
            ).scalar_one()
        )
        state["next_run_time"] = when
        conn.execute(
            text("UPDATE apscheduler_jobs SET next_run_time = :t, job_state = :s WHERE id = :i"),
            {"t": when.timestamp(), "s": pickle.dumps(state), "i": job_id},
        )


def stored_jobs(engine: Engine) -> dict[str, float | None]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, next_run_time FROM apscheduler_jobs")).all())  # type: ignore[arg-type]


# -- one run: folder and mail ----------------------------------------------------------------------


def test_folder_gets_the_csv_under_the_export_and_range_name(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    seed_week(engine)
    folder = tmp_path / "reports" / "weekly"  # does not exist yet
    job = ExportJob(name="weekly-agents", cron="0 6 * * 1", report="agent", format="csv", folder=folder)
    settings = settings_for(db_url, job)

    delivered = run_export(engine, settings, job, now=NOW)

    target = folder / "weekly-agents_2026-11-16_2026-11-22.csv"
    assert delivered == [target]
    assert sorted(p.name for p in folder.iterdir()) == [target.name]  # no temporary file left behind
    data = target.read_bytes()
    assert data == render(engine, settings, ReportQuery("agent", *WEEK), "csv", now=NOW)
    rows = {r["group"]: r for r in csv_rows(data)}
    assert set(rows) == {"alice", "bob", "(all)"}  # carol answered on the 23rd (Berlin): not in the week
    assert (rows["alice"]["responses"], rows["alice"]["csat_pct"], rows["alice"]["rank"]) == (
        "3",
        "100.0",
        "1",
    )
    assert (rows["bob"]["responses"], rows["bob"]["csat_pct"]) == ("2", "50.0")
    assert rows["(all)"]["responses"] == "5"


def test_a_rerun_replaces_the_file(db_url: str, engine: Engine, tmp_path: Path) -> None:
    job = ExportJob(name="weekly", cron="0 6 * * 1", format="csv", folder=tmp_path)
    settings = settings_for(db_url, job)
    (path,) = run_export(engine, settings, job, now=NOW)
    assert [r["group"] for r in csv_rows(path.read_bytes())] == []  # no answers yet: the header only
    seed_week(engine)
    assert run_export(engine, settings, job, now=NOW) == [path]
    assert {r["group"] for r in csv_rows(path.read_bytes())} == {"alice", "bob", "(all)"}


def test_mail_carries_the_rendered_report(
    db_url: str, engine: Engine, smtp_sink: Sink, tmp_path: Path
) -> None:
    seed_week(engine)
    job = ExportJob(
        name="weekly-agents",
        cron="0 6 * * 1",
        report="agent",
        format="json",
        folder=tmp_path / "out",
        email_to=["supervisor@example.test", "qa@example.test"],
    )
    settings = settings_for(
        db_url, job, smtp=SmtpSettings(host="127.0.0.1", port=smtp_sink.port, from_addr="csat@example.test")
    )

    delivered = run_export(engine, settings, job, now=NOW)

    name = "weekly-agents_2026-11-16_2026-11-22.json"
    assert delivered == [tmp_path / "out" / name, "supervisor@example.test", "qa@example.test"]
    assert len(smtp_sink.messages) == 1
    mail_from, rcpt_tos, _ = smtp_sink.messages[0]
    assert (mail_from, rcpt_tos) == ("csat@example.test", ["supervisor@example.test", "qa@example.test"])
    msg = smtp_sink.parsed()
    assert msg["Subject"] == "csat report: weekly-agents 2026-11-16–2026-11-22"
    assert msg["To"] == "supervisor@example.test, qa@example.test"
    expected = render(engine, settings, ReportQuery("agent", *WEEK), "json", now=NOW)
    assert attachments(msg) == {name: expected}
    assert (tmp_path / "out" / name).read_bytes() == expected
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Range: 2026-11-16 to 2026-11-22 (days in Europe/Berlin)" in body
    assert "1. alice: CSAT 100.0 % (n=3)" in body
    assert "2. bob: CSAT 50.0 % (n=2)" in body
    assert "(all): CSAT 80.0 % (n=5)" in body


def test_starttls_and_login(
    db_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that demands STARTTLS and a login: csat verifies its certificate (here via SSL_CERT_FILE)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    sink = Sink(port=free_port())

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        sink.logins.append((data.login.decode(), data.password.decode()))
        # handled=False: aiosmtpd then answers a refusal with 535 itself.
        return AuthResult(success=(data.login, data.password) == (b"csat", b"s3cret"), handled=False)

    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=sink.port,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    try:
        seed_week(engine)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        job = ExportJob(name="weekly", cron="0 6 * * 1", format="csv", email_to=["boss@example.test"])
        smtp = SmtpSettings(
            host="127.0.0.1", port=sink.port, starttls=True, username="csat", password="s3cret"
        )
        settings = settings_for(db_url, job, smtp=smtp)
        assert run_export(engine, settings, job, now=NOW) == ["boss@example.test"]
        assert sink.logins == [("csat", "s3cret")]
        assert len(sink.messages) == 1

        wrong = settings.model_copy(update={"smtp": smtp.model_copy(update={"password": "nope"})})
        with pytest.raises(ExportError, match=rf"export 'weekly' .*via 127\.0\.0\.1:{sink.port}: .*535"):
            run_export(engine, wrong, job, now=NOW)
        assert len(sink.messages) == 1
    finally:
        controller.stop()


def test_smtp_down_keeps_the_file_and_names_job_and_server(
    db_url: str, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed_week(engine)
    port = free_port()  # nothing listens here
    job = ExportJob(
        name="weekly-agents", cron="0 6 * * 1", format="csv", folder=tmp_path, email_to=["boss@example.test"]
    )
    settings = settings_for(db_url, job, smtp=SmtpSettings(host="127.0.0.1", port=port, timeout_s=5))

    with pytest.raises(ExportError) as raised:
        run_export(engine, settings, job, now=NOW)
    message = str(raised.value)
    assert message.startswith(
        "export 'weekly-agents' (2026-11-16–2026-11-22): could not mail boss@example.test"
    )
    assert f"via 127.0.0.1:{port}" in message
    path = tmp_path / "weekly-agents_2026-11-16_2026-11-22.csv"
    assert raised.value.delivered == [path]
    assert path.read_bytes() == render(engine, settings, ReportQuery("agent", *WEEK), "csv", now=NOW)

    # Run by the scheduler, the failure is logged under the export's name instead of raised.
    add_export_jobs(BackgroundScheduler(timezone="UTC"), settings, engine)
    with caplog.at_level(logging.ERROR, logger="csat.exports"):
        scheduled_export("weekly-agents")
    (record,) = [r for r in caplog.records if r.getMessage() == "scheduled export failed"]
    assert record.export == "weekly-agents"  # type: ignore[attr-defined]
    assert f"127.0.0.1:{port}" in record.error  # type: ignore[attr-defined]
    assert len(record.delivered) == 1  # type: ignore[attr-defined]


def test_export_now_runs_a_configured_export_and_refuses_unknown_names(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    seed_week(engine)
    job = ExportJob(name="weekly", cron="0 6 * * 1", report="queue", format="csv", folder=tmp_path)
    settings = settings_for(db_url, job)
    (path,) = export_now(settings, "weekly", now=NOW)
    assert path == tmp_path / "weekly_2026-11-16_2026-11-22.csv"
    assert [(r["group"], r["responses"]) for r in csv_rows(path.read_bytes())] == [
        ("support", "5"),
        ("(all)", "5"),
    ]
    with pytest.raises(ExportError, match=r"no export named 'nope' in the settings \(configured: weekly\)"):
        export_now(settings, "nope")


def test_agent_reports_one_pdf_per_agent(db_url: str, engine: Engine, tmp_path: Path) -> None:
    pytest.importorskip("scoring.agent_report")
    seed_week(engine)
    store_answer(engine, "1.7", "SIP/200", 4, datetime(2026, 11, 17, 9, 0))
    job = ExportJob(name="coaching", cron="0 6 * * 1", report="agent-report", format="pdf", folder=tmp_path)
    settings = settings_for(db_url, job)

    delivered = run_export(engine, settings, job, now=NOW)

    names = sorted(p.name for p in delivered)  # type: ignore[union-attr]
    assert names == [
        "coaching_SIP_200_2026-11-16_2026-11-22.pdf",
        "coaching_alice_2026-11-16_2026-11-22.pdf",
        "coaching_bob_2026-11-16_2026-11-22.pdf",
    ]  # carol: no answers in the week
    assert all((tmp_path / n).read_bytes().startswith(b"%PDF") for n in names)

    only = job.model_copy(update={"agents": ["alice"]})
    assert [p.name for p in run_export(engine, settings, only, now=NOW)] == [names[1]]  # type: ignore[union-attr]


def test_xlsx_by_mail(db_url: str, engine: Engine, smtp_sink: Sink) -> None:
    pytest.importorskip("scoring.xlsx_export")
    openpyxl = pytest.importorskip("openpyxl")
    seed_week(engine)
    job = ExportJob(name="weekly", cron="0 6 * * 1", format="xlsx", email_to=["boss@example.test"])
    settings = settings_for(db_url, job, smtp=SmtpSettings(host="127.0.0.1", port=smtp_sink.port))
    run_export(engine, settings, job, now=NOW)
    ((name, data),) = attachments(smtp_sink.parsed()).items()
    assert name == "weekly_2026-11-16_2026-11-22.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(data))
    cells = {c for ws in book.worksheets for row in ws.iter_rows(values_only=True) for c in row}
    assert {"alice", "bob"} <= cells


# -- the schedule ----------------------------------------------------------------------------------


def test_missed_runs_are_caught_up_once_after_a_restart(
    db_url: str, engine: Engine, smtp_sink: Sink, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    hour = (now.hour + 12) % 24  # fires 11–13 h away from now: no real fire during the test
    fired = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if fired > now:
        fired -= timedelta(days=1)  # the latest time the schedule was due
    day = fired.date() - timedelta(days=1)  # "yesterday" as of that run
    store_answer(engine, "2.1", "alice", 5, datetime.combine(day, time(12)))
    store_answer(engine, "2.2", "alice", 3, datetime.combine(fired.date(), time(hour)))  # the day after
    job = ExportJob(
        name="daily",
        cron=f"0 {hour} * * *",
        range="yesterday",
        format="csv",
        folder=tmp_path / "out",
        email_to=["boss@example.test"],
    )
    settings = settings_for(db_url, job, smtp=SmtpSettings(host="127.0.0.1", port=smtp_sink.port), tz="UTC")

    first = BackgroundScheduler(timezone="UTC")
    add_export_jobs(first, settings, db_url)
    first.start(paused=True)
    assert first.get_job("export:daily", jobstore="exports").next_run_time == fired + timedelta(days=1)
    first.shutdown()
    rewind(engine, "export:daily", fired - timedelta(days=3))  # csat was down over four runs
    assert stored_jobs(engine) == {"export:daily": (fired - timedelta(days=3)).timestamp()}

    second = BackgroundScheduler(timezone="UTC")
    runs: list[JobExecutionEvent] = []
    second.add_listener(runs.append, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    add_export_jobs(second, settings, db_url)
    second.start()
    try:
        wait_for(lambda: runs)
        clock.sleep(0.5)  # time for a wrong second submission to show
        assert [(r.job_id, r.scheduled_run_time) for r in runs] == [("export:daily", fired)]
        assert second.get_job("export:daily", jobstore="exports").next_run_time == fired + timedelta(days=1)
    finally:
        second.shutdown()

    assert len(smtp_sink.messages) == 1  # four runs missed, one made: coalesced
    name = f"daily_{day}_{day}.csv"
    assert attachments(smtp_sink.parsed()) == {name: (tmp_path / "out" / name).read_bytes()}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [name]
    rows = {r["group"]: r["responses"] for r in csv_rows((tmp_path / "out" / name).read_bytes())}
    assert rows == {"alice": "1", "(all)": "1"}  # the range of the missed run, not of today
    assert stored_jobs(engine) == {"export:daily": (fired + timedelta(days=1)).timestamp()}


def test_jobs_table_lives_in_the_csat_database(db_url: str, engine: Engine, tmp_path: Path) -> None:
    """On PostgreSQL the URL's search_path (the test's private schema) is where the table goes."""
    job = ExportJob(name="weekly", cron="0 6 * * 1", folder=tmp_path)
    scheduler = BackgroundScheduler(timezone="UTC")
    add_export_jobs(scheduler, settings_for(db_url, job), db_url)
    scheduler.start(paused=True)
    scheduler.shutdown()
    assert {"apscheduler_jobs", "answers"} <= set(inspect(engine).get_table_names())
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
            where = conn.execute(
                text(
                    "SELECT table_schema FROM information_schema.tables WHERE table_name = 'apscheduler_jobs'"
                )
            ).scalars()
            assert schema.startswith("t_") and schema in set(where)
    assert set(stored_jobs(engine)) == {"export:weekly"}


def test_exports_dropped_from_the_settings_leave_the_schedule(
    db_url: str, engine: Engine, tmp_path: Path, smtp_sink: Sink
) -> None:
    smtp = SmtpSettings(host="127.0.0.1", port=smtp_sink.port)
    old = ExportJob(name="old", cron="0 6 * * *", format="csv", folder=tmp_path, email_to=["a@example.test"])
    keep = ExportJob(name="keep", cron="0 7 1 * *", format="csv", folder=tmp_path)
    first = BackgroundScheduler(timezone="UTC")
    add_export_jobs(first, settings_for(db_url, old, keep, smtp=smtp), db_url)
    first.start(paused=True)
    first.shutdown()
    rewind(engine, "export:old", datetime.now(UTC) - timedelta(days=1))  # overdue when csat starts again
    assert set(stored_jobs(engine)) == {"export:old", "export:keep"}

    second = BackgroundScheduler(timezone="UTC")
    assert add_export_jobs(second, settings_for(db_url, keep, smtp=smtp), db_url) == ["export:keep"]
    assert set(stored_jobs(engine)) == {"export:keep"}  # gone before the scheduler could run it
    second.start()
    try:
        assert [j.id for j in second.get_jobs(jobstore="exports")] == ["export:keep"]
        clock.sleep(0.3)
    finally:
        second.shutdown()
    assert smtp_sink.messages == [] and list(tmp_path.iterdir()) == []  # the overdue "old" never ran

    assert add_export_jobs(BackgroundScheduler(), settings_for(db_url, smtp=smtp), db_url) == []
    assert stored_jobs(engine) == {}


def test_a_job_removed_while_scheduled_does_nothing(db_url: str, tmp_path: Path) -> None:
    job = ExportJob(name="weekly", cron="0 6 * * 1", folder=tmp_path)
    add_export_jobs(BackgroundScheduler(), settings_for(db_url, job), db_url)
    scheduled_export("gone")  # a stored job whose export was deleted from the config meanwhile
    assert list(tmp_path.iterdir()) == []


def test_without_add_export_jobs_the_job_loads_the_settings_itself(
    db_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a scheduler in another process would do with the stored job: only the name survives."""
    now = datetime.now(UTC)
    yesterday = (now - timedelta(days=1)).date()
    store_answer(engine, "3.1", "bob", 4, datetime.combine(yesterday, time(12)))
    config = tmp_path / "csat.toml"
    config.write_text(
        f'database_url = "{db_url}"\ntimezone = "UTC"\n[scoring]\nmin_responses = 1\n'
        f'[[exports]]\nname = "daily"\ncron = "0 0 * * *"\nrange = "yesterday"\nformat = "csv"\n'
        f'folder = "{tmp_path / "out"}"\n'
    )
    monkeypatch.setenv("CSAT_CONFIG", str(config))
    monkeypatch.setattr(se, "_runtime", None)
    scheduled_export("daily")
    (path,) = (tmp_path / "out").iterdir()
    assert path.name == f"daily_{yesterday}_{yesterday}.csv"
    assert [(r["group"], r["responses"]) for r in csv_rows(path.read_bytes())] == [
        ("bob", "1"),
        ("(all)", "1"),
    ]


def test_bad_cron_names_the_export_before_touching_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never.sqlite3'}"
    good = ExportJob(name="daily", cron="0 6 * * *", folder=tmp_path)
    bad = ExportJob(name="weekly-agents", cron="61 * * * *", folder=tmp_path)
    scheduler = BackgroundScheduler()
    with pytest.raises(ExportError) as raised:
        add_export_jobs(scheduler, settings_for(url, good, bad), url)
    assert str(raised.value) == (
        "export 'weekly-agents': cron '61 * * * *' is not valid: "
        "Error validating expression '61': the last value (61) is higher than the maximum value (59)"
    )
    assert not (tmp_path / "never.sqlite3").exists()
    assert scheduler.get_jobs() == []

    for cron, why in [
        ("0 6 * *", "expected 5 fields"),
        ("0 6 1 * 1", "both set"),
        ("0 6 * * 8", "day-of-week '8'"),
        ("0 6 * * fri-mon", "runs backwards"),
    ]:
        with pytest.raises(
            ExportError, match=rf"^export 'x': cron '{re.escape(cron)}' is not valid: .*{why}"
        ):
            export_triggers(settings_for(url, ExportJob(name="x", cron=cron, folder=tmp_path)))
    with pytest.raises(ExportError, match="export 'daily' is defined twice"):
        export_triggers(settings_for(url, good, good))


@pytest.mark.parametrize(
    ("field", "weekdays"),
    [
        ("1", "Mon"),
        ("0", "Sun"),
        ("7", "Sun"),
        ("1-5", "Mon Tue Wed Thu Fri"),
        ("*/2", "Sun Tue Thu Sat"),
        ("5-7", "Sun Fri Sat"),
        ("sat,sun", "Sun Sat"),
        ("MON", "Mon"),
        ("*", "Sun Mon Tue Wed Thu Fri Sat"),
    ],
)
def test_weekdays_mean_what_crontab_means(field: str, weekdays: str) -> None:
    """APScheduler's own from_crontab would run "0 6 * * 1" on Tuesdays (its Monday is 0)."""
    tz = ZoneInfo(TZ)
    trigger = crontab_trigger(f"0 6 * * {field}", tz)
    fire, seen = datetime(2026, 11, 22, 12, tzinfo=tz), set()  # a Sunday
    for _ in range(7):
        fire = trigger.get_next_fire_time(None, fire + timedelta(seconds=1))
        assert (fire.hour, fire.minute) == (6, 0)
        seen.add(fire.strftime("%a"))
    order = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    assert " ".join(sorted(seen, key=order.index)) == weekdays


def test_a_caught_up_run_reports_the_range_it_was_due_for() -> None:
    """ "yesterday" at 23:30 Berlin, caught up after midnight, still means the day before that 23:30."""
    trigger = crontab_trigger("30 23 * * *", ZoneInfo(TZ))
    late = datetime(2026, 11, 24, 0, 10, tzinfo=ZoneInfo(TZ))
    due = se.latest_fire_time(trigger, late)
    assert due == datetime(2026, 11, 23, 23, 30, tzinfo=ZoneInfo(TZ))
    monthly = crontab_trigger("0 6 1 * *", ZoneInfo(TZ))
    assert se.latest_fire_time(monthly, late) == datetime(2026, 11, 1, 6, 0, tzinfo=ZoneInfo(TZ))


def test_database_down_at_start_still_schedules_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = ExportJob(name="weekly", cron="0 6 * * 1", folder=tmp_path)
    scheduler = BackgroundScheduler(timezone="UTC")
    with caplog.at_level(logging.ERROR, logger="csat.exports"):
        assert add_export_jobs(scheduler, settings_for(DOWN_URL, job), DOWN_URL) == ["export:weekly"]
    assert "missed runs will not be caught up" in caplog.text
    scheduler.start(paused=True)  # csat serve must still start
    try:
        (stored,) = scheduler.get_jobs(jobstore="exports")
        assert stored.next_run_time.strftime("%a %H:%M") == "Mon 06:00"
    finally:
        scheduler.shutdown()


def test_store_errors_do_not_escape_into_the_scheduler_loop() -> None:
    """APScheduler's loop catches them only in get_due_jobs; anywhere else its thread would die."""
    down = make_engine(DOWN_URL)
    store = ExportJobStore(engine=down, tablename="apscheduler_jobs")
    before = datetime.now(UTC)
    retry = store.get_next_run_time()
    assert retry is not None and before < retry <= datetime.now(UTC) + se.STORE_RETRY

    class Job:
        id = "export:x"
        next_run_time = None

        def __getstate__(self) -> dict[str, Any]:
            return {}

    store.update_job(Job())  # logged, not raised
    down.dispose()


def test_the_example_config_schedules_what_its_comments_say(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/csat.example.toml promises "0 6 * * 1" is Mondays 06:00 (APScheduler alone would say Tuesday)."""
    monkeypatch.setenv("CSAT_CONFIG", str(Path(__file__).resolve().parents[1] / "docs" / "csat.example.toml"))
    settings = load_settings()
    triggers = export_triggers(settings)
    sunday = datetime(2026, 11, 22, 12, tzinfo=settings.tz)
    weekly = triggers["weekly-agents"].get_next_fire_time(None, sunday)
    assert weekly.strftime("%a %H:%M") == "Mon 06:00"
    monthly = triggers["monthly-training-packs"].get_next_fire_time(None, sunday)
    assert monthly.strftime("%d %H:%M") == "01 07:00"
