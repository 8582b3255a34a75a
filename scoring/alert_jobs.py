"""The alert scanner in ``csat serve``: every few seconds, raise alerts for new answers and post them.

It runs in the scheduler beside the survey server, so it must outlive a database outage: errors are
logged as warnings and the next run picks up where the watermark stands (nothing is lost, only late).
One run at a time, and missed runs collapse into one: a scan covers everything since the last anyway.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ivr.settings import Settings
from scoring.alert_store import AlertRow, scan_new_answers, set_webhook_status
from scoring.webhook import alert_payload, post_alert

log = logging.getLogger("csat.alerts")

JOB_ID = "alerts-scan"


def add_alert_jobs(scheduler: BaseScheduler, settings: Settings, engine: Engine) -> None:
    """Schedule the scanner (in the in-memory job store: it holds the engine, nothing to persist)."""
    if not settings.alerts.enabled:
        log.info("low-score alerts are off ([alerts] enabled = false)")
        return
    scheduler.add_job(
        scan_and_notify,
        "interval",
        args=(engine, settings),
        seconds=settings.alerts.scan_interval_s,
        next_run_time=datetime.now(UTC),
        id=JOB_ID,
        max_instances=1,
        coalesce=True,
        replace_existing=True,
    )


def scan_and_notify(engine: Engine, settings: Settings, *, now: datetime | None = None) -> list[AlertRow]:
    """One scan: the new alerts, with the webhook status each got (None when no webhook is set)."""
    try:
        new = scan_new_answers(engine, settings, now=now)
    except SQLAlchemyError as exc:
        log.warning("alerts not scanned: database unavailable", extra={"error": str(exc)[:200]})
        return []
    if new:
        log.info("low-score alerts raised", extra={"count": len(new)})
    url = settings.alerts.webhook_url
    if not url:
        return new
    posted: list[AlertRow] = []
    for alert in new:
        status = post_alert(url, alert_payload(alert), settings.alerts.webhook_timeout_s)
        if status.startswith("error"):
            log.warning("alert webhook failed", extra={"alert_id": alert.id, "status": status})
        try:
            set_webhook_status(engine, alert.id, status)
        except SQLAlchemyError as exc:
            log.warning(
                "alert webhook status not stored: database unavailable",
                extra={"alert_id": alert.id, "error": str(exc)[:200]},
            )
        posted.append(dataclasses.replace(alert, webhook_status=status))
    return posted
