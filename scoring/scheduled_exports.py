"""Scheduled exports (``[[exports]]``): a report rendered on a cron schedule, filed in a folder and/or mailed.

Why the schedule lives in the database (table ``apscheduler_jobs``, next to the answers): the store
keeps each export's next run time, so a Monday 06:00 report that fell while csat was down (an upgrade,
a reboot) is still made when csat starts again: ONCE, however many runs were missed (coalesced), and
for the range its latest missed run would have covered. Only the export's name is stored with the job;
what it renders and where it goes are read from the settings when it runs.

Cron expressions mean what they mean in crontab(5). APScheduler 3 numbers weekdays from Monday = 0
(crontab: Sunday = 0 or 7) and requires day-of-month AND day-of-week where crontab accepts either;
``crontab_trigger`` translates the first and refuses the second, so ``0 6 * * 1`` runs on Mondays.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.util import utc_timestamp_to_datetime
from sqlalchemy import Engine, delete, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from ivr.db import make_engine
from ivr.models import Answer
from ivr.settings import ExportJob, Settings, SmtpSettings, load_settings
from scoring.exports import EXTENSIONS, render
from scoring.periods import local_day_bounds, local_today, resolve_range
from scoring.report import Report, ReportRow, build_report
from scoring.tallies import ReportQuery

log = logging.getLogger("csat.exports")

JOBSTORE = "exports"
TABLE = "apscheduler_jobs"
JOB_PREFIX = "export:"
#: The job function, by import path: the store pickles this reference, not the function.
JOB_FUNC = "scoring.scheduled_exports:scheduled_export"
#: How many report lines the e-mail body quotes.
TOP_LINES = 5
#: How soon the scheduler looks at the store again after the database failed it.
STORE_RETRY = timedelta(seconds=30)

MIME_TYPES: dict[str, tuple[str, str]] = {
    "csv": ("text", "csv"),
    "json": ("application", "json"),
    "xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "pdf": ("application", "pdf"),
}


class ExportError(RuntimeError):
    """An export could not be made or not delivered everywhere; ``delivered`` is what did arrive."""

    def __init__(self, message: str, delivered: Sequence[Path | str] = ()) -> None:
        super().__init__(message)
        self.delivered: list[Path | str] = list(delivered)


# -- cron ------------------------------------------------------------------------------------------

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_trigger(expr: str, tz: ZoneInfo) -> CronTrigger:
    """A trigger that fires when crontab(5) would (see the module docstring for the two differences)."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    # crontab(5): "If both fields are restricted (i.e., do not start with *), the command will be run
    # when either field matches"; APScheduler would run only when both match.
    if not day.startswith("*") and not weekday.startswith("*"):
        raise ValueError(
            "day-of-month and day-of-week are both set, which crontab reads as 'either' and csat cannot;"
            " set one of them to * (use two exports for both)"
        )
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(weekday), timezone=tz
    )


def _weekday(text: str) -> int:
    """A crontab weekday: 0–7 (0 and 7 are Sunday) or a name."""
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    if text.lower() in _WEEKDAYS:
        return _WEEKDAYS.index(text.lower())
    raise ValueError(f"day-of-week {text!r} is not 0–7 or a day name (sun … sat)")


def _weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler day names (``1-5`` → ``mon,tue,wed,thu,fri``)."""
    if field == "*":
        return field
    chosen: set[int] = set()
    for token in field.split(","):
        base, slash, step_text = token.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            raise ValueError(f"day-of-week step {step_text!r} must be a positive number")
        step = int(step_text) if slash else 1
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            start_text, end_text = base.split("-", 1)
            first, last = _weekday(start_text), _weekday(end_text)
            if last == 0 and first > 0:  # "fri-sun": Sunday as 7 ends a range
                last = 7
            if first > last:
                raise ValueError(f"day-of-week range {base!r} runs backwards")
        else:
            first = _weekday(base)
            last = 7 if slash else first  # "1/2": from Monday to the end of the week, every 2nd day
        chosen.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_WEEKDAYS[d] for d in sorted(chosen))


def export_triggers(settings: Settings) -> dict[str, CronTrigger]:
    """Every export's trigger; raises ExportError naming the first export whose cron is not valid.

    Called before anything is scheduled so that a typo stops ``csat serve`` at start, not at 06:00.
    """
    triggers: dict[str, CronTrigger] = {}
    for job in settings.exports:
        if job.name in triggers:
            raise ExportError(f"export {job.name!r} is defined twice; export names must be unique")
        try:
            triggers[job.name] = crontab_trigger(job.cron, settings.tz)
        except ValueError as exc:
            raise ExportError(f"export {job.name!r}: cron {job.cron!r} is not valid: {exc}") from None
    return triggers


def latest_fire_time(trigger: CronTrigger, now: datetime) -> datetime | None:
    """When the schedule last fired at or before ``now`` (None if not in the last eight years).

    A run the scheduler starts late (a caught-up run) uses this to report the range it was due for.
    """
    window = timedelta(hours=1)
    while window <= timedelta(days=8 * 366):
        fire = trigger.get_next_fire_time(None, now - window)
        if fire is not None and fire <= now:
            while (later := trigger.get_next_fire_time(None, fire + timedelta(microseconds=1))) and (
                later <= now
            ):
                fire = later
            return fire
        window *= 2
    return None


# -- one run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """What one run produced: the files, and the lines the e-mail quotes."""

    files: list[tuple[str, bytes]]
    summary: list[str]


def run_export(
    engine: Engine,
    settings: Settings,
    job: ExportJob,
    *,
    now: datetime,
    scheduled_for: datetime | None = None,
) -> list[Path | str]:
    """Render ``job`` and deliver it; returns the files written (Path) and the addresses mailed (str).

    The range is resolved from the local day of ``scheduled_for`` (a caught-up run reports what its
    missed run would have), else of ``now``. Each destination is tried even if the other failed, so a
    mail server being down never costs the file in the folder; then ExportError says what failed.
    """
    today = local_today(settings.tz, scheduled_for or now)
    date_from, date_to = resolve_range(job.range, today)
    try:
        rendered = render_job(engine, settings, job, date_from, date_to, now=now)
    except SQLAlchemyError as exc:
        raise ExportError(
            f"export {job.name!r}: the database is unavailable: {str(exc).splitlines()[0]}"
        ) from exc
    delivered: list[Path | str] = []
    errors: list[str] = []
    if job.folder is not None:
        try:
            delivered += write_files(job.folder, rendered.files)
        except OSError as exc:
            errors.append(f"could not write to {job.folder}: {exc}")
    if job.email_to:
        smtp = settings.smtp
        try:
            refused = send_mail(smtp, _message(settings, job, date_from, date_to, rendered))
        except (smtplib.SMTPException, OSError) as exc:
            errors.append(f"could not mail {', '.join(job.email_to)} via {smtp.host}:{smtp.port}: {exc}")
        else:
            delivered += [to for to in job.email_to if to not in refused]
            if refused:
                errors.append(f"{smtp.host}:{smtp.port} refused {', '.join(sorted(refused))}")
    if errors:
        raise ExportError(f"export {job.name!r} ({date_from}–{date_to}): {'; '.join(errors)}", delivered)
    log.info(
        "export delivered",
        extra={
            "export": job.name,
            "date_from": date_from.isoformat(),
            "date_to": date_to.isoformat(),
            "delivered": [str(d) for d in delivered],
        },
    )
    return delivered


def render_job(
    engine: Engine, settings: Settings, job: ExportJob, date_from: date, date_to: date, *, now: datetime
) -> Rendered:
    """The files of one run: one report file, or one agent-report PDF per agent."""
    stem = f"{_safe(job.name)}_{date_from.isoformat()}_{date_to.isoformat()}"
    if job.report == "agent-report":
        from scoring.agent_report import agent_report_data, render_agent_report

        agents = job.agents or agents_with_answers(engine, settings.tz, date_from, date_to, queue=job.queue)
        files = []
        for agent in agents:
            data = agent_report_data(engine, settings, agent, date_from, date_to, now=now)
            files.append(
                (f"{_safe(job.name)}_{_safe(agent)}_{date_from}_{date_to}.pdf", render_agent_report(data))
            )
        summary = [f"One report per agent: {', '.join(agents)}"] if agents else ["No agent had answers."]
        return Rendered(_unique_names(files), summary)
    query = ReportQuery(
        by=job.report,
        date_from=date_from,
        date_to=date_to,
        period=job.period,
        queue=job.queue,
        question=job.question,
    )
    report = build_report(engine, settings, query, now=now)
    data = render(engine, settings, query, job.format, now=now, report=report)
    return Rendered([(f"{stem}.{EXTENSIONS[job.format]}", data)], summary_lines(report))


def agents_with_answers(
    engine: Engine, tz: ZoneInfo, date_from: date, date_to: date, *, queue: str | None = None
) -> list[str]:
    """Agents with at least one answer in the local-day range (in ``queue`` if given), by name."""
    start, _ = local_day_bounds(date_from, tz)
    _, end = local_day_bounds(date_to, tz)
    stmt = (
        select(Answer.agent)
        .distinct()
        .where(
            Answer.answered_at >= start,  # type: ignore[operator]
            Answer.answered_at < end,  # type: ignore[operator]
            Answer.agent.is_not(None),  # type: ignore[union-attr]
        )
    )
    if queue is not None:
        stmt = stmt.where(Answer.queue == queue)  # type: ignore[arg-type]
    with engine.connect() as conn:
        return sorted(a for a in conn.execute(stmt).scalars() if a)


def summary_lines(report: Report, limit: int = TOP_LINES) -> list[str]:
    """The first rows of a report and its total, as a reader skims them in a mail."""
    lines = [report.title, ""]
    lines += [_line(r) for r in report.rows[:limit]]
    if len(report.rows) > limit:
        lines.append(f"     … {len(report.rows) - limit} more in the attachment")
    lines += [_line(r) for r in report.totals]
    if not report.rows:
        lines.append("No answers in this range.")
    return lines


def _line(row: ReportRow) -> str:
    rank = f"{row.rank}." if row.rank else "-"
    group = f"{row.group} {row.period}" if row.period else row.group
    csat = f"{row.csat_pct:.1f} %" if row.csat_pct is not None else "n/a"
    nps = f", NPS {row.nps:+.0f}" if row.nps is not None else ""
    return f"{rank:>4} {group}: CSAT {csat} (n={row.responses}){nps}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(name: str) -> str:
    """A file-name-safe form of an export or agent name (agents may be ``SIP/200`` or have spaces)."""
    return _UNSAFE.sub("_", name).strip("._") or "_"


def _unique_names(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Two agents whose names sanitise alike must not overwrite each other's file."""
    seen: set[str] = set()
    out = []
    for name, data in files:
        stem, dot, ext = name.rpartition(".")
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{stem}-{n}{dot}{ext}"
        seen.add(candidate)
        out.append((candidate, data))
    return out


# -- delivery --------------------------------------------------------------------------------------


def write_files(folder: Path, files: Sequence[tuple[str, bytes]]) -> list[Path]:
    """Write each file via a temporary name and a rename, so a reader never sees half a report."""
    folder = folder.expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files:
        target = folder / name
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the report is for whoever reads the folder
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written


def _message(
    settings: Settings, job: ExportJob, date_from: date, date_to: date, rendered: Rendered
) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"csat report: {job.name} {date_from}–{date_to}"
    msg["From"] = settings.smtp.from_addr
    msg["To"] = ", ".join(job.email_to)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=settings.smtp.from_addr.rpartition("@")[2] or None)
    body = [
        f"Scheduled export {job.name!r}",
        f"Range: {date_from} to {date_to} (days in {settings.timezone})",
        "",
        *rendered.summary,
        "",
    ]
    if rendered.files:
        body.append("Attached: " + ", ".join(name for name, _ in rendered.files))
    msg.set_content("\n".join(body) + "\n")
    for name, data in rendered.files:
        maintype, subtype = MIME_TYPES[name.rpartition(".")[2]]
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg


def send_mail(smtp: SmtpSettings, msg: EmailMessage) -> dict[str, Any]:
    """Send through ``[smtp]``; returns the recipients the server refused (empty when all were taken).

    STARTTLS verifies the server's certificate against the system CAs (``SSL_CERT_FILE`` names a
    private CA's bundle): a report must not go to whoever answers on the network path.
    """
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        return dict(client.send_message(msg))


# -- the schedule ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Runtime:
    settings: Settings
    engine: Engine


#: The settings and engine ``csat serve`` scheduled the exports with, for the runs it then makes.
_runtime: _Runtime | None = None


class ExportJobStore(SQLAlchemyJobStore):
    """The SQLAlchemy store, made to survive the database going away.

    APScheduler 3 catches database errors only in ``get_due_jobs``: one from ``get_next_run_time`` or
    ``update_job`` escapes its loop and ends the scheduler thread, and with it the spool replay that
    shares it. Here such errors are logged and the store is asked again ``STORE_RETRY`` later.
    """

    def get_next_run_time(self) -> datetime | None:
        try:
            return super().get_next_run_time()
        except SQLAlchemyError as exc:
            log.warning("export schedule unreadable; retrying", extra={"error": str(exc).splitlines()[0]})
            return datetime.now(UTC) + STORE_RETRY

    def update_job(self, job: Any) -> None:
        try:
            super().update_job(job)
        except SQLAlchemyError as exc:
            # The old next run time stays in the table: the export runs again once the database is back.
            log.error(
                "could not store an export's next run time",
                extra={"job": job.id, "error": str(exc).splitlines()[0]},
            )


def add_export_jobs(scheduler: BaseScheduler, settings: Settings, engine_or_url: Engine | str) -> list[str]:
    """Schedule every ``[[exports]]`` entry; returns the job ids. Call before ``scheduler.start()``.

    The jobs live in ``apscheduler_jobs`` in the csat database (the engine's, or the URL's). A stored
    next run time that has already passed is kept, so the missed run is made once when the scheduler
    starts; otherwise the next run comes from the (possibly edited) cron. Exports no longer in the
    settings are removed from the table. If the database is unreachable, csat must still start: the
    exports are then scheduled in memory and a run missed during this outage is not caught up.
    """
    global _runtime
    triggers = export_triggers(settings)
    engine = engine_or_url if isinstance(engine_or_url, Engine) else make_engine(engine_or_url)
    _runtime = _Runtime(settings, engine)
    wanted = {JOB_PREFIX + name for name in triggers}
    store: ExportJobStore | MemoryJobStore = ExportJobStore(engine=engine, tablename=TABLE)
    try:
        stored = _reconcile(store.jobs_t, engine, wanted)  # type: ignore[union-attr]
    except SQLAlchemyError as exc:
        error = str(exc).splitlines()[0]
        if triggers:
            log.error(
                "database unreachable: exports scheduled in memory, missed runs will not be caught up",
                extra={"error": error},
            )
        else:
            log.warning(
                "database unreachable: old exports stay in the schedule table", extra={"error": error}
            )
        store, stored = MemoryJobStore(), {}
    if not triggers:
        return []
    scheduler.add_jobstore(store, JOBSTORE)
    now = datetime.now(UTC)
    ids = []
    for name, trigger in triggers.items():
        job_id = JOB_PREFIX + name
        missed = stored.get(job_id)
        extra: dict[str, Any] = {"next_run_time": missed} if missed is not None and missed <= now else {}
        scheduler.add_job(
            JOB_FUNC,
            trigger=trigger,
            args=[name],
            id=job_id,
            name=f"export {name}",
            jobstore=JOBSTORE,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=None,
            max_instances=1,
            **extra,
        )
        if extra:
            log.info("export missed while csat was down; running it now", extra={"export": name})
        ids.append(job_id)
    return ids


def _reconcile(table: Any, engine: Engine, wanted: set[str]) -> dict[str, datetime | None]:
    """Create the jobs table if needed, drop exports no longer configured, return the stored next runs."""
    if not wanted and not inspect(engine).has_table(TABLE):  # nothing to schedule, nothing to undo
        return {}
    table.create(engine, checkfirst=True)
    with engine.begin() as conn:
        rows = {job_id: ts for job_id, ts in conn.execute(select(table.c.id, table.c.next_run_time))}
        stale = sorted(i for i in rows if i.startswith(JOB_PREFIX) and i not in wanted)
        if stale:
            conn.execute(delete(table).where(table.c.id.in_(stale)))
    for job_id in stale:
        log.info(
            "export no longer configured; removed from the schedule",
            extra={"export": job_id[len(JOB_PREFIX) :]},
        )
    return {i: utc_timestamp_to_datetime(ts) for i, ts in rows.items() if i in wanted}


def scheduled_export(name: str) -> None:
    """What the scheduler runs; the stored job holds only ``name``, so it still works after a restart.

    Settings come from ``add_export_jobs`` (the ones ``csat serve`` started with), else are loaded. An
    export removed from the settings does nothing. Failures are logged, never raised into APScheduler,
    which would log them a second time without the export's name.
    """
    runtime = _runtime
    settings = runtime.settings if runtime else load_settings()
    job = next((j for j in settings.exports if j.name == name), None)
    if job is None:
        log.warning("scheduled export is no longer configured", extra={"export": name})
        return
    engine = runtime.engine if runtime else make_engine(settings.resolved_database_url)
    now = datetime.now(UTC)
    try:
        scheduled_for = latest_fire_time(crontab_trigger(job.cron, settings.tz), now) or now
        run_export(engine, settings, job, now=now, scheduled_for=scheduled_for)
    except ExportError as exc:
        log.error(
            "scheduled export failed",
            extra={"export": name, "error": str(exc), "delivered": [str(d) for d in exc.delivered]},
        )
    except Exception:
        log.exception("scheduled export failed", extra={"export": name})
    finally:
        if runtime is None:
            engine.dispose()


def export_now(settings: Settings, name: str, now: datetime | None = None) -> list[Path | str]:
    """``csat export run NAME``: make one export now, for the range as of today (``now``)."""
    job = next((j for j in settings.exports if j.name == name), None)
    if job is None:
        known = ", ".join(j.name for j in settings.exports) or "none"
        raise ExportError(f"no export named {name!r} in the settings (configured: {known})")
    engine = make_engine(settings.resolved_database_url)
    try:
        return run_export(engine, settings, job, now=now or datetime.now(UTC))
    finally:
        engine.dispose()
