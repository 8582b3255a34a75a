"""``csat serve``: one process with the AMI listener, the FastAGI survey server and the scheduler.

The three parts fail independently: AMI down → surveys still run (offers are then decided by the
survey leg itself); database down → answers go to the spool and the scheduler replays them.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ivr.ami_listener import AmiListener
from ivr.db import finalize_orphaned_surveys, make_engine
from ivr.fastagi_server import FastAgiServer
from ivr.models import utcnow
from ivr.offers import OfferService
from ivr.prompts import build_prompts, missing_prompts
from ivr.settings import Settings
from ivr.spool import Spool
from ivr.store import CallStore
from ivr.survey_leg import SurveyLeg
from scoring.alert_jobs import add_alert_jobs
from scoring.scheduled_exports import add_export_jobs
from scoring.web.deps import RuntimeStatus
from scoring.web.server import DashboardServer

log = logging.getLogger("csat.serve")


@dataclass
class Service:
    settings: Settings
    store: CallStore
    offers: OfferService
    leg: SurveyLeg
    agi: FastAgiServer
    listener: AmiListener
    scheduler: BackgroundScheduler
    dashboard: DashboardServer | None = None
    stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.agi.start()
        self.listener.start()
        self.scheduler.start()
        if self.dashboard is not None:
            self.dashboard.start()
        log.info(
            "csat serving", extra={"agi_port": self.settings.agi.port, "ami_port": self.settings.ami.port}
        )

    def stop(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        if self.dashboard is not None:
            self.dashboard.stop()
        self.agi.stop()
        self.listener.stop()
        self.scheduler.shutdown(wait=False)
        self.store.engine.dispose()
        log.info("csat stopped")


def build_service(settings: Settings) -> Service:
    missing = missing_prompts(settings)
    if missing:
        log.info("building missing prompts", extra={"count": len(missing)})
        build_prompts(settings)
    engine = make_engine(settings.resolved_database_url)
    store = CallStore(engine, Spool(settings.spool_dir))
    offers = OfferService(settings, store)
    leg = SurveyLeg(settings, store, offers)
    agi = FastAgiServer(settings.agi.host, settings.agi.port, leg)
    listener = AmiListener(settings, store, offers)
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        store.replay_spool,
        "interval",
        seconds=settings.spool_replay_interval_s,
        id="spool-replay",
        max_instances=1,
        coalesce=True,
    )
    add_export_jobs(scheduler, settings, engine)  # job store "exports": apscheduler_jobs in the csat database
    add_alert_jobs(scheduler, settings, engine)  # low-score alerts: scan new answers, post webhooks
    scheduler.add_job(
        _refresh_rollups,
        "interval",
        args=(engine, settings),
        seconds=settings.scoring.rollup_interval_s,
        next_run_time=datetime.now(UTC),
        id="rollups-refresh",
        max_instances=1,
        coalesce=True,
    )
    dashboard = None
    if settings.web.enabled:
        runtime = RuntimeStatus(ami_connected=lambda: listener.connected)
        dashboard = DashboardServer(settings, engine, runtime)
    return Service(settings, store, offers, leg, agi, listener, scheduler, dashboard)


def _refresh_rollups(engine: Engine, settings: Settings) -> None:
    """Keep reports fast; a database that is down only delays this (the next run catches up)."""
    from scoring.rollups import refresh

    try:
        refresh(engine, settings.tz)
    except SQLAlchemyError as exc:
        log.warning("rollups not refreshed: database unavailable", extra={"error": str(exc)[:200]})


def serve(settings: Settings) -> None:
    service = build_service(settings)
    store = service.store
    applied, left = store.replay_spool()
    if applied or left:
        log.info("spool replayed at start", extra={"applied": applied, "left": left})
    try:
        orphaned = finalize_orphaned_surveys(store.engine, utcnow())
        if orphaned:
            log.warning("closed surveys left open by a previous csat process", extra={"count": orphaned})
    except SQLAlchemyError as exc:
        log.error("database unavailable at start; answers will be spooled", extra={"error": str(exc)[:200]})

    stop_requested = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received, stopping", extra={"signal": signum})
        stop_requested.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    service.start()
    try:
        stop_requested.wait()
    finally:
        service.stop()
