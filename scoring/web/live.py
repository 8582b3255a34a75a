"""The live feed: surveys appear on ``/live`` as they end, pushed by server-sent events.

``GET /live/events`` polls the database every ``[web] live_poll_s`` for calls whose survey ended
(``survey_ended_at``) since the last poll and sends one ``survey`` event per call, with its answers.
Polling the database rather than hooking the survey server keeps the feed right whichever process
stored the survey, and costs one indexed query per viewer per poll.

Commit order is not time order (PostgreSQL may commit a survey that ended earlier after one that ended
later), so each poll looks back ``LOOKBACK`` before the newest end it has sent and skips calls already
sent. Each event carries an ``id`` (end time and uniqueid); a reconnecting browser sends it back as
``Last-Event-ID`` and resumes after it. A comment line every ``HEARTBEAT_S`` keeps proxies from
closing an idle stream. ``max_events`` / ``max_seconds`` end a stream early, for scripts and tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from sqlalchemy import select

from ivr.models import Answer, Call, SurveyState, utcnow
from scoring.web.access import Viewer, can_see_overview
from scoring.web.api import visible_agents
from scoring.web.deps import WebContext, context, render, require

router = APIRouter()

ENDED_STATES = tuple(
    s.value for s in (SurveyState.COMPLETED, SurveyState.PARTIAL, SurveyState.NO_INPUT, SurveyState.FAILED)
)
LOOKBACK = timedelta(seconds=10)
HEARTBEAT_S = 15.0
#: At most this many events per poll; the rest follow on the next poll (a reconnect after a long gap).
BATCH = 500
#: How far back a Last-Event-ID may reach: a browser that comes back after a night gets a fresh feed.
MAX_RESUME = timedelta(hours=1)

_NOT_FOR_AGENTS = "The live feed is for supervisors, trainers and admins."
Watcher = Annotated[Viewer, Depends(require(can_see_overview, _NOT_FOR_AGENTS))]


@router.get("/live", response_class=HTMLResponse, include_in_schema=False)
def live_page(request: Request, viewer: Watcher) -> HTMLResponse:
    return render(request, "live.html", backlog=20)


@dataclass
class Cursor:
    """Where a stream is: nothing that ended before ``floor``; ``sent`` = uniqueids near the edge."""

    floor: datetime
    newest: datetime
    sent: dict[str, datetime] = field(default_factory=dict)

    def since(self) -> datetime:
        return max(self.floor, self.newest - LOOKBACK)

    def mark(self, uniqueid: str, ended: datetime) -> None:
        self.sent[uniqueid] = ended
        self.newest = max(self.newest, ended)
        edge = self.since()
        self.sent = {u: t for u, t in self.sent.items() if t >= edge}


def event_id(ended: datetime, uniqueid: str) -> str:
    return f"{ended.isoformat()}|{uniqueid}"


def parse_event_id(value: str | None, now: datetime) -> Cursor | None:
    """The cursor a ``Last-Event-ID`` stands for; None if it is not one of ours or too old."""
    if not value or "|" not in value:
        return None
    stamp, uniqueid = value.split("|", 1)
    try:
        ended = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if ended.tzinfo is not None or ended < now - MAX_RESUME or ended > now + LOOKBACK:
        return None
    cursor = Cursor(floor=ended, newest=ended)
    cursor.mark(uniqueid, ended)
    return cursor


def _iso(value: datetime) -> str:
    return value.replace(tzinfo=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ended_surveys(
    ctx: WebContext, viewer: Viewer, since: datetime | None, *, newest_first: int | None = None
) -> list[dict[str, Any]]:
    """Surveys that ended at or after ``since`` (oldest first), with their answers, visible ones only.

    ``newest_first=N`` instead gives the N most recent (still returned oldest first), for the backlog.
    """
    c = Call.__table__.c  # type: ignore[attr-defined]
    where = [c.survey_state.in_(ENDED_STATES), c.survey_ended_at.is_not(None)]
    if since is not None:
        where.append(c.survey_ended_at >= since)
    seen = visible_agents(ctx, viewer)
    if seen is not None:
        where.append(c.agent.in_(sorted(seen)))
    stmt = select(c.uniqueid, c.agent, c.queue, c.survey_state, c.survey_ended_at).where(*where)
    if newest_first is not None:
        stmt = stmt.order_by(c.survey_ended_at.desc(), c.uniqueid.desc()).limit(newest_first)
    else:
        stmt = stmt.order_by(c.survey_ended_at, c.uniqueid).limit(BATCH)
    a = Answer.__table__.c  # type: ignore[attr-defined]
    with ctx.engine.connect() as conn:
        calls = conn.execute(stmt).all()
        if newest_first is not None:
            calls.reverse()
        answers: dict[str, dict[str, int | None]] = {row.uniqueid: {} for row in calls}
        types: dict[str, dict[str, str]] = {row.uniqueid: {} for row in calls}
        if calls:
            for uid, question, qtype, value in conn.execute(
                select(a.call_uniqueid, a.question, a.question_type, a.value)
                .where(a.call_uniqueid.in_(list(answers)))
                .order_by(a.call_uniqueid, a.position)
            ):
                answers[uid][question] = value
                types[uid][question] = qtype
    return [
        {
            "uniqueid": row.uniqueid,
            "time": _iso(row.survey_ended_at),
            "ended_at": row.survey_ended_at,
            "agent": row.agent,
            "queue": row.queue,
            "state": row.survey_state,
            "answers": answers[row.uniqueid],
            "types": types[row.uniqueid],  # so the page can write a yes/no question as yes or no
        }
        for row in calls
    ]


def _frame(survey: dict[str, Any]) -> str:
    data = {k: v for k, v in survey.items() if k != "ended_at"}
    return (
        f"id: {event_id(survey['ended_at'], survey['uniqueid'])}\n"
        f"event: survey\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
    )


@router.get("/live/events", include_in_schema=False)
async def live_events(
    request: Request,
    viewer: Watcher,
    backlog: Annotated[int, Query(ge=0, le=100)] = 0,
    max_events: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    max_seconds: Annotated[float | None, Query(gt=0, le=86_400)] = None,
) -> StreamingResponse:
    """``text/event-stream`` of ``survey`` events: JSON with time, uniqueid, agent, queue, state and
    answers (question → value; null for a voice comment). ``backlog=N`` first sends the N latest."""
    ctx = context(request)
    now = utcnow()  # taken before the response starts, so a survey ending after the connect is sent
    cursor = parse_event_id(request.headers.get("last-event-id"), now) or Cursor(floor=now, newest=now)
    resuming = cursor.sent != {}

    async def stream() -> AsyncIterator[str]:
        sent = 0
        started = time.monotonic()
        last_write = started
        yield "retry: 3000\n\n"
        if backlog and not resuming:
            latest_n = partial(ended_surveys, newest_first=backlog)
            latest = await anyio.to_thread.run_sync(latest_n, ctx, viewer, None)
            for survey in latest:
                cursor.sent[survey["uniqueid"]] = survey["ended_at"]  # one that just ended: not twice
                yield _frame(survey)
        while True:
            if await request.is_disconnected():
                return
            new = await anyio.to_thread.run_sync(ended_surveys, ctx, viewer, cursor.since())
            for survey in new:
                if survey["uniqueid"] in cursor.sent:
                    continue
                cursor.mark(survey["uniqueid"], survey["ended_at"])
                yield _frame(survey)
                last_write = time.monotonic()
                sent += 1
                if max_events is not None and sent >= max_events:
                    return
            elapsed = time.monotonic() - started
            if max_seconds is not None and elapsed >= max_seconds:
                return
            if time.monotonic() - last_write >= HEARTBEAT_S:
                yield ": keep-alive\n\n"
                last_write = time.monotonic()
            wait = ctx.settings.web.live_poll_s
            if max_seconds is not None:
                wait = min(wait, max(0.0, max_seconds - elapsed))
            await anyio.sleep(wait)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
