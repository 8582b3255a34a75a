"""The ``csat`` command line. Each command loads the one settings object and reports errors plainly."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ivr.cli_support import settings_or_exit as _settings
from ivr.settings import Settings
from scoring.cli import register as register_scoring_commands
from scoring.web.cli import register as register_web_commands

app = typer.Typer(help="csat: post-call IVR surveys for Asterisk call centres.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
dialplan_app = typer.Typer(help="The Asterisk dialplan csat needs.", no_args_is_help=True)
prompts_app = typer.Typer(help="Survey prompt audio.", no_args_is_help=True)
spool_app = typer.Typer(help="Answers kept locally while the database was down.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(dialplan_app, name="dialplan")
app.add_typer(prompts_app, name="prompts")
app.add_typer(spool_app, name="spool")
register_scoring_commands(app)
register_web_commands(app)

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, json or csv")]


def _logging(settings: Settings) -> None:
    from ivr.logging_setup import setup_logging

    setup_logging(settings.log_level, settings.log_format)


@app.command()
def serve() -> None:
    """Run the AMI listener, the FastAGI survey server and the scheduler (until SIGTERM/Ctrl-C)."""
    settings = _settings()
    _logging(settings)
    from sqlalchemy.exc import SQLAlchemyError

    from ivr.migrate import schema_is_current
    from ivr.serve import serve as run
    from scoring.scheduled_exports import ExportError, export_triggers

    try:
        export_triggers(settings)  # a bad cron stops the start with the export's name, not a traceback
    except ExportError as exc:
        typer.echo(f"csat: {exc}", err=True)
        raise typer.Exit(2) from None

    try:
        current = schema_is_current(settings.resolved_database_url)
    except SQLAlchemyError as exc:
        # Calls must not wait for the database: surveys run, answers are spooled and replayed later.
        typer.echo(
            f"csat: database unreachable ({str(exc).splitlines()[0]}); answers will be spooled", err=True
        )
        current = True
    if not current:
        typer.echo(
            "csat: the database schema is missing or out of date; run `csat db upgrade` first", err=True
        )
        raise typer.Exit(2)
    run(settings)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema (SQLite file or CSAT_DATABASE_URL)."""
    settings = _settings()
    from ivr.migrate import upgrade

    try:
        upgrade(settings.resolved_database_url)
    except Exception as exc:  # noqa: BLE001
        typer.echo(f"csat: database upgrade failed: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"database schema is current ({settings.resolved_database_url.split('@')[-1]})")


@app.command()
def check() -> None:
    """Validate the configuration, the database, the prompts and the AMI login."""
    settings = _settings()
    from ivr.check import run_checks

    results = run_checks(settings)
    for r in results:
        mark = "WARN" if r.warning else ("ok" if r.ok else "FAIL")
        typer.echo(f"[{mark:>4}] {r.name}: {r.message}")
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@dialplan_app.command("render")
def dialplan_render(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")
    ] = None,
) -> None:
    """Write the csat-survey context for your extensions.conf to #include."""
    settings = _settings()
    from ivr.dialplan_render import render_dialplan, write_dialplan

    if output is None:
        sys.stdout.write(render_dialplan(settings))
    else:
        write_dialplan(settings, output)
        typer.echo(f"wrote {output}; #include it from extensions.conf and run `dialplan reload`")


@prompts_app.command("build")
def prompts_build(force: Annotated[bool, typer.Option(help="rebuild files that exist")] = True) -> None:
    """(Re)generate every survey prompt with espeak-ng + sox (8 kHz WAV)."""
    settings = _settings()
    from ivr.prompts import PromptError, build_prompts

    try:
        written = build_prompts(settings, force=force)
    except PromptError as exc:
        typer.echo(f"csat: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{len(written)} prompt file(s) written under {settings.resolved_prompts_dir}")


@spool_app.command("replay")
def spool_replay() -> None:
    """Store what was spooled while the database was down (csat serve also does this on its own)."""
    settings = _settings()
    from ivr.db import make_engine
    from ivr.spool import Spool
    from ivr.store import CallStore

    store = CallStore(make_engine(settings.resolved_database_url), Spool(settings.spool_dir))
    applied, left = store.replay_spool()
    typer.echo(f"replayed {applied} record(s); {left} left")
    if left:
        raise typer.Exit(1)


@app.command()
def calls(fmt: FormatOpt = "table", limit: int = 1000) -> None:
    """Queue calls with their survey state and why they were (not) surveyed."""
    settings = _settings()
    from ivr.db import make_engine
    from ivr.output import render
    from ivr.queries import CALL_COLUMNS, list_calls

    typer.echo(render(list_calls(make_engine(settings.resolved_database_url), limit), fmt, CALL_COLUMNS))


@app.command()
def answers(fmt: FormatOpt = "table", limit: int = 10_000) -> None:
    """Stored survey answers, newest first."""
    settings = _settings()
    from ivr.db import make_engine
    from ivr.output import render
    from ivr.queries import ANSWER_COLUMNS, list_answers

    typer.echo(render(list_answers(make_engine(settings.resolved_database_url), limit), fmt, ANSWER_COLUMNS))


@app.command()
def demo(
    calls: Annotated[int, typer.Option(help="simulated calls in the first batch")] = 30,
    once: Annotated[bool, typer.Option("--once", help="exit 0 once every call is stored")] = False,
) -> None:
    """Run a local call centre (private Asterisk, 3 SIPp agents, csat) with simulated customers."""
    settings = _settings()
    from ivr.demo import run_demo

    raise typer.Exit(run_demo(settings, calls=calls, once=once))
