"""The scoring side of the ``csat`` command: reports, the agent training report, imports, rollups, exports.

Registered on the main ``csat`` app by ``ivr/cli.py``; each command loads the one settings object and
turns bad input (a date, an unknown agent, a bad CSV row, an unreachable database) into one clear line
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated, get_args

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ivr.cli_support import settings_or_exit
from ivr.settings import ExportFormat, ReportBy, ReportPeriod, Settings

rollups_app = typer.Typer(help="Daily rollups that make reports fast.", no_args_is_help=True)
agents_app = typer.Typer(help="Agents and their teams.", no_args_is_help=True)
export_app = typer.Typer(help="Scheduled exports (the exports list in the settings).", no_args_is_help=True)

FromOpt = Annotated[str | None, typer.Option("--from", help="first day, YYYY-MM-DD (default: 29 days ago)")]
ToOpt = Annotated[str | None, typer.Option("--to", help="last day, YYYY-MM-DD, inclusive (default: today)")]


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"csat: {message}", err=True)
    return typer.Exit(code)


def _engine(settings: Settings) -> Engine:
    from ivr.db import make_engine

    return make_engine(settings.resolved_database_url)


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise fail(f"{option} {value!r} is not a date; use YYYY-MM-DD", 2) from None


def _range(settings: Settings, date_from: str | None, date_to: str | None) -> tuple[date, date]:
    from scoring.report import default_range

    first, last = default_range(settings)
    first = _date(date_from, "--from") if date_from else first
    last = _date(date_to, "--to") if date_to else last
    if last < first:
        raise fail(f"--to ({last}) is before --from ({first})", 2)
    return first, last


def _choice(value: str | None, allowed: tuple[str, ...], option: str) -> None:
    if value is not None and value not in allowed:
        raise fail(f"{option} must be one of {', '.join(allowed)} (got {value!r})", 2)


def _db_error(exc: SQLAlchemyError) -> typer.Exit:
    first = str(exc).splitlines()[0]
    if isinstance(exc, OperationalError):
        return fail(
            f"the database is unreachable or not set up ({first}); check database_url, `csat db upgrade`"
        )
    return fail(f"database error: {first}")


def _write(data: bytes, output: Path | None, fmt: str) -> None:
    if output is None:
        if fmt in ("xlsx", "pdf"):
            raise fail(f"--format {fmt} writes a file: give -o FILE", 2)
        sys.stdout.write(data.decode())
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(output)
    typer.echo(f"wrote {output} ({len(data):,} bytes)", err=True)


def report(
    by: Annotated[str, typer.Option(help="agent, queue, team or question")] = "agent",
    period: Annotated[str | None, typer.Option(help="day, week or month (default: the whole range)")] = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    queue: Annotated[str | None, typer.Option(help="only this queue")] = None,
    question: Annotated[str | None, typer.Option(help="only this question key (e.g. csat)")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json, csv, xlsx or pdf")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write")] = None,
) -> None:
    """CSAT, NPS, CES and FCR per agent/queue/team/question with 95 % intervals, ranked."""
    settings = settings_or_exit()
    _choice(by, get_args(ReportBy), "--by")
    _choice(period, get_args(ReportPeriod), "--period")
    _choice(fmt, ("table", *get_args(ExportFormat)), "--format")
    first, last = _range(settings, date_from, date_to)
    from scoring.exports import render, render_table
    from scoring.progress import progress_bar
    from scoring.report import build_report
    from scoring.tallies import ReportQuery

    query = ReportQuery(by=by, date_from=first, date_to=last, period=period, queue=queue, question=question)  # type: ignore[arg-type]
    engine = _engine(settings)
    try:
        with progress_bar("building report") as update:
            update(0, 2)
            built = build_report(engine, settings, query)
            update(1, 2)
            data = None if fmt == "table" else render(engine, settings, query, fmt, report=built)  # type: ignore[arg-type]
            update(2, 2)
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None
    if data is None:
        text = render_table(built)
        if not built.rows:
            text += "\n(no answers in this range: check --from/--to, --queue, --question)"
        if output is None:
            typer.echo(text)
        else:
            _write((text + "\n").encode(), output, fmt)
        return
    _write(data, output, fmt)


def agent_report(
    agent: Annotated[str, typer.Argument(help="the agent's member name, as in `csat report --by agent`")],
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="PDF file to write")] = Path(
        "agent-report.pdf"
    ),
) -> None:
    """The training report for one agent (PDF): trend, distribution, team comparison, lowest-rated calls."""
    settings = settings_or_exit()
    first, last = _range(settings, date_from, date_to)
    from scoring.agent_report import agent_report_data, render_agent_report
    from scoring.teams import known_agents

    engine = _engine(settings)
    try:
        if agent not in known_agents(engine):
            raise fail(
                f"unknown agent {agent!r}: no answers or calls are stored for it (see `csat report`)", 2
            )
        data = agent_report_data(engine, settings, agent, first, last)
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None
    _write(render_agent_report(data), output, "pdf")


def import_answers(
    csv_file: Annotated[Path, typer.Argument(help="answers CSV (see docs/scoring.md)")],
) -> None:
    """Load historical answers (timestamp, agent, queue, question, value[, call_id]); all or nothing."""
    settings = settings_or_exit()
    from scoring.importer import CsvImportError
    from scoring.importer import import_answers as run_import
    from scoring.progress import progress_bar
    from scoring.rollups import recompute_days

    if not csv_file.is_file():
        raise fail(f"{csv_file} does not exist", 2)
    engine = _engine(settings)
    try:
        with progress_bar(f"importing {csv_file.name}") as update:
            result = run_import(engine, csv_file, settings, progress=update)
        with progress_bar("updating rollups") as update:
            recompute_days(engine, settings.tz, result.days, progress=update)
    except CsvImportError as exc:
        raise fail(f"{exc}; nothing was imported", 1) from None
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None
    typer.echo(
        f"{result.inserted} answer(s) imported, {result.skipped} already present, from {result.rows} row(s)"
        f" over {len(result.days)} day(s)"
    )


@agents_app.command("import")
def agents_import(
    csv_file: Annotated[Path, typer.Argument(help="agents CSV: agent, team[, display_name, email]")],
) -> None:
    """Set who is in which team (replaces [teams] from the settings for the agents it names)."""
    settings = settings_or_exit()
    from scoring.importer import CsvImportError, import_agents

    if not csv_file.is_file():
        raise fail(f"{csv_file} does not exist", 2)
    try:
        result = import_agents(_engine(settings), csv_file)
    except CsvImportError as exc:
        raise fail(f"{exc}; nothing was imported", 1) from None
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None
    typer.echo(f"agents: {result.created} created, {result.updated} updated, {result.unchanged} unchanged")


@agents_app.command("list")
def agents_list(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or csv")] = "table",
) -> None:
    """Agents with their team (from the settings and imports)."""
    settings = settings_or_exit()
    from ivr.output import render as render_rows
    from scoring.teams import team_map

    try:
        teams = team_map(_engine(settings), settings)
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None
    rows = [{"agent": a, "team": t} for a, t in sorted(teams.items())]
    typer.echo(render_rows(rows, fmt, ["agent", "team"]))


@rollups_app.command("rebuild")
def rollups_rebuild() -> None:
    """Recompute every daily rollup from the raw answers and calls (exact; safe while csat serve runs)."""
    settings = settings_or_exit()
    from scoring.progress import progress_bar
    from scoring.rollups import rebuild

    try:
        with progress_bar("rebuilding rollups") as update:
            n = rebuild(_engine(settings), settings.tz, progress=update)
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None
    typer.echo(f"rollups rebuilt: {n} day(s) in time zone {settings.timezone}")


@rollups_app.command("refresh")
def rollups_refresh() -> None:
    """Recompute only the days that changed (what csat serve does every few minutes)."""
    settings = settings_or_exit()
    from scoring.rollups import refresh

    try:
        n = refresh(_engine(settings), settings.tz)
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None
    typer.echo(f"rollups refreshed: {n} day(s) recomputed")


@export_app.command("run")
def export_run(name: Annotated[str, typer.Argument(help="the name of an [[exports]] entry")]) -> None:
    """Run one scheduled export now (files and/or e-mail as configured)."""
    settings = settings_or_exit()
    from scoring.scheduled_exports import ExportError, export_now

    if name not in {e.name for e in settings.exports}:
        known = ", ".join(e.name for e in settings.exports) or "none configured"
        raise fail(f"no export named {name!r} ({known})", 2)
    try:
        delivered = export_now(settings, name)
    except ExportError as exc:
        for item in exc.delivered:
            typer.echo(f"delivered {item}")
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise _db_error(exc) from None
    for item in delivered:
        typer.echo(f"delivered {item}")


@export_app.command("list")
def export_list() -> None:
    """The configured exports and their schedules."""
    settings = settings_or_exit()
    if not settings.exports:
        typer.echo("no [[exports]] configured (see docs/csat.example.toml)")
    for e in settings.exports:
        where = ", ".join([*([str(e.folder)] if e.folder else []), *e.email_to])
        typer.echo(f"{e.name}: '{e.cron}' {e.report} {e.range} as {e.format} -> {where}")


def register(app: typer.Typer) -> None:
    app.command()(report)
    app.command("agent-report")(agent_report)
    app.command("import")(import_answers)
    app.add_typer(agents_app, name="agents")
    app.add_typer(rollups_app, name="rollups")
    app.add_typer(export_app, name="export")
