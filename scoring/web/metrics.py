"""``GET /metrics``: Prometheus text format, for a scraper on the same host or an admin.

What is counted in the database is read from it at scrape time (a GROUP BY over ``calls.survey_state``,
a count of answers, open alerts), so the figures survive restarts and agree with the reports. What
only the running process knows comes from it: AMI connected (``RuntimeStatus``) and the dead-air
histogram (``ivr.metrics``). A database that cannot be reached gives ``csat_database_up 0`` and the
rest, rather than a failed scrape: that is when the other figures matter most.

Metrics:

- ``csat_database_up`` (gauge) 1 if the counts below could be read.
- ``csat_calls{survey_state}`` (gauge) calls csat knows, by their current survey state.
- ``csat_surveys_offered_total`` (counter) calls sent to the survey (every state from ``offered`` on).
- ``csat_surveys_completed_total`` / ``_partial_total`` / ``_no_input_total`` (counters) ended surveys.
- ``csat_answers_stored_total`` (counter) answers in the database.
- ``csat_open_alerts`` (gauge) low-score alerts in state ``open``.
- ``csat_ami_connected`` (gauge) 1 while the AMI listener is logged in.
- ``csat_survey_dead_air_seconds`` (histogram) see ``ivr.metrics``.

Who may scrape: loopback clients without signing in (Prometheus on the same host), else an admin
session or an admin's API token. A request that came through a proxy (``Forwarded`` /
``X-Forwarded-For``) is never treated as local, even if the proxy itself connects from 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ivr import metrics as ivr_metrics
from ivr.models import Alert, AlertState, Answer, Call, SurveyState
from scoring.web.deps import WebContext, context, optional_viewer

log = logging.getLogger("csat.web.metrics")

router = APIRouter()

#: The funnel's "offered" stage as the reports count it (``scoring.rollups``): offered and every later state.
OFFERED_STATES = frozenset(SurveyState) - {SurveyState.NOT_OFFERED}
ENDED = (SurveyState.COMPLETED, SurveyState.PARTIAL, SurveyState.NO_INPUT)


def is_local(request: Request) -> bool:
    """A direct connection from this host (127.0.0.0/8, ::1, or IPv4-mapped loopback), not via a proxy."""
    if "forwarded" in request.headers or "x-forwarded-for" in request.headers:
        return False
    host = request.client.host if request.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class Snapshot(Collector):
    """Everything one scrape reports, read when collected."""

    def __init__(self, ctx: WebContext) -> None:
        self._ctx = ctx

    def collect(self) -> Iterator[Metric]:
        yield from self._database()
        yield from self._runtime()
        yield from ivr_metrics.REGISTRY.collect()

    def _database(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("csat_database_up", "1 if csat's database answered this scrape's queries.")
        try:
            with self._ctx.engine.connect() as conn:
                rows = conn.execute(select(Call.survey_state, func.count()).group_by(Call.survey_state)).all()
                answers = conn.execute(select(func.count()).select_from(Answer)).scalar_one()
        except SQLAlchemyError as exc:
            log.warning("metrics: database unavailable", extra={"error": str(exc)[:200]})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_state = {str(state): int(n) for state, n in rows}
        calls = GaugeMetricFamily(
            "csat_calls", "Calls csat knows, by their current survey state.", labels=["survey_state"]
        )
        for state in sorted({*(s.value for s in SurveyState), *by_state}):
            calls.add_metric([state], by_state.get(state, 0))
        yield calls
        offered = sum(n for state, n in by_state.items() if state in OFFERED_STATES)
        yield CounterMetricFamily(
            "csat_surveys_offered", "Calls sent to the survey (offered and every later state).", value=offered
        )
        for state in ENDED:
            yield CounterMetricFamily(
                f"csat_surveys_{state.value}",
                f"Surveys that ended {state.value.replace('_', ' ')}.",
                value=by_state.get(state.value, 0),
            )
        yield CounterMetricFamily("csat_answers_stored", "Answers stored in the database.", value=answers)
        yield from self._alerts()

    def _alerts(self) -> Iterator[Metric]:
        """Its own connection: on PostgreSQL a failed query would spoil the transaction it ran in."""
        try:
            with self._ctx.engine.connect() as conn:
                n = conn.execute(
                    select(func.count()).select_from(Alert).where(Alert.state == AlertState.OPEN.value)  # type: ignore[arg-type]
                ).scalar_one()
        except SQLAlchemyError:  # a database migrated before the alerts table existed
            return
        yield GaugeMetricFamily("csat_open_alerts", "Low-score alerts nobody has acted on yet.", value=n)

    def _runtime(self) -> Iterator[Metric]:
        try:
            connected = bool(self._ctx.runtime.ami_connected())
        except Exception:  # noqa: BLE001 - a broken status callback must not break the scrape
            log.exception("metrics: AMI status unavailable")
            connected = False
        yield GaugeMetricFamily(
            "csat_ami_connected", "1 while csat is logged in to Asterisk's manager port.", value=connected
        )


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    if not is_local(request):
        who = optional_viewer(request)
        if who is None:
            return PlainTextResponse(
                "sign in as an admin or send an admin's API token (Authorization: Bearer …)\n",
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not who.is_admin:
            return PlainTextResponse("metrics are for admins and for scrapers on this host\n", 403)
    return Response(generate_latest(Snapshot(context(request))), media_type=CONTENT_TYPE_PLAIN_0_0_4)
