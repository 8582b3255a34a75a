"""Low-score alerts on the dashboard (``/alerts``) and in the API (``/api/v1/alerts``).

Who: admins work every alert; a supervisor works the alerts of their teams' agents and gets 403 (not
404) for any other, so a mistyped id and a foreign alert are told apart honestly. Trainers and agents
have no alert workflow at all (403). Alerts of agents in no team, or of unknown agents, are admin-only.

The routes stay thin: rules live in ``scoring.alerts``, storage and the race-safe move in
``scoring.alert_store``. The page (and, optionally, an API client) sends the state the user saw along
with a move, so a move that crosses another user's gets 409 instead of applying to a state nobody saw.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ivr.models import AlertState
from scoring.alert_store import (
    AlertDetail,
    AlertEventRow,
    AlertNotFound,
    AlertRow,
    get_alert,
    list_alerts,
    move,
    state_counts,
)
from scoring.alerts import (
    ACTION_LABELS,
    MAX_NOTE,
    REASON_LABELS,
    STATE_LABELS,
    AlertTransitionError,
    NoteError,
    clean_note,
    next_states,
)
from scoring.teams import team_map
from scoring.web.access import Viewer, can_see_agent, can_work_alerts, visible_agents
from scoring.web.deps import Forbidden, check_csrf, context, render, require

router = APIRouter()

NOT_YOURS = "This alert is for an agent outside your teams."
#: Alert ids are PostgreSQL integers; a larger id is a client error, not a database overflow.
MAX_ID = 2**31 - 1
PAGE_SIZE = 50

Worker = Annotated[
    Viewer,
    Depends(require(can_work_alerts, "Alerts are worked by supervisors (for their teams) and admins.")),
]
AlertId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The alert's id.")]


# -- API models ------------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    detail: str


class AlertEventOut(BaseModel):
    at: datetime = Field(description="When, UTC.")
    user: str = Field(description="Who moved the alert.")
    from_state: AlertState
    to_state: AlertState
    note: str | None


class AlertOut(BaseModel):
    id: int
    agent: str | None
    queue: str | None
    question: str = Field(description="The survey question's key, e.g. csat.")
    question_type: str
    value: int | None = Field(description="The caller's answer.")
    reason: str = Field(description="low_csat, low_ces, nps_detractor or fcr_no.")
    state: AlertState
    next_states: list[AlertState] = Field(description="Where the workflow lets this alert go next.")
    answered_at: datetime = Field(description="When the caller answered, UTC.")
    created_at: datetime
    updated_at: datetime
    call_uniqueid: str
    linkedid: str
    webhook_status: str | None = Field(
        description='The webhook\'s answer ("200", "error: …"), if one is set.'
    )
    dashboard_path: str


class AlertDetailOut(AlertOut):
    events: list[AlertEventOut] = Field(description="The workflow's history, oldest first.")


class AlertPageOut(BaseModel):
    items: list[AlertOut]
    total: int = Field(description="Alerts matching the filter, across all pages.")
    limit: int
    offset: int


class MoveIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    to: AlertState = Field(description="The state to move the alert to.")
    note: str | None = Field(default=None, max_length=MAX_NOTE, description="What was done or found.")
    expected_from: AlertState | None = Field(
        default=None,
        alias="from",
        description="The state you saw; if the alert has moved since, nothing happens and you get 409.",
    )

    @field_validator("note")
    @classmethod
    def _note_keepable(cls, value: str | None) -> str | None:
        return clean_note(value)  # NoteError is a ValueError: pydantic turns it into a 422


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Not signed in and no API token."},
    403: {"model": ErrorOut, "description": "Not a supervisor of this agent's team, or no CSRF token."},
}
_ONE_ALERT_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: {"model": ErrorOut, "description": "No such alert."},
}


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC)


def _alert_out(a: AlertRow) -> dict[str, Any]:
    return {
        "id": a.id,
        "agent": a.agent,
        "queue": a.queue,
        "question": a.question,
        "question_type": a.question_type,
        "value": a.value,
        "reason": a.reason,
        "state": a.state,
        "next_states": list(next_states(a.state)),
        "answered_at": _utc(a.answered_at),
        "created_at": _utc(a.created_at),
        "updated_at": _utc(a.updated_at),
        "call_uniqueid": a.call_uniqueid,
        "linkedid": a.linkedid,
        "webhook_status": a.webhook_status,
        "dashboard_path": f"/alerts/{a.id}",
    }


def _event_out(e: AlertEventRow) -> AlertEventOut:
    return AlertEventOut(
        at=_utc(e.at),
        user=e.user,
        from_state=AlertState(e.from_state),
        to_state=AlertState(e.to_state),
        note=e.note,
    )


def _detail_out(d: AlertDetail) -> AlertDetailOut:
    return AlertDetailOut(**_alert_out(d.alert), events=[_event_out(e) for e in d.events])


# -- who sees what ---------------------------------------------------------------------------------


def _team_of(request: Request) -> dict[str, str]:
    ctx = context(request)
    return team_map(ctx.engine, ctx.settings)


def _scope(request: Request, who: Viewer) -> set[str] | None:
    """The agents whose alerts ``who`` works; None = all (admin)."""
    if who.is_admin:
        return None
    team_of = _team_of(request)
    return visible_agents(who, team_of.keys(), team_of)


def _visible_alert(request: Request, who: Viewer, alert_id: int) -> AlertDetail | None:
    """The alert if it exists; Forbidden if it exists but is not ``who``'s to work."""
    found = get_alert(context(request).engine, alert_id)
    if found is None:
        return None
    agent = found.alert.agent
    if not who.is_admin and (agent is None or not can_see_agent(who, agent, _team_of(request))):
        raise Forbidden(NOT_YOURS)
    return found


# -- API -------------------------------------------------------------------------------------------


@router.get(
    "/api/v1/alerts", response_model=AlertPageOut, responses=_ERRORS, tags=["alerts"], summary="List alerts"
)
def api_alerts(
    request: Request,
    who: Worker,
    state: Annotated[AlertState | None, Query(description="Only alerts in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AlertPageOut:
    """The alerts you work, newest answer first."""
    engine = context(request).engine
    agents = _scope(request, who)
    rows = list_alerts(engine, agents=agents, state=state, limit=limit, offset=offset)
    counts = state_counts(engine, agents=agents)
    total = counts.get(state, 0) if state is not None else sum(counts.values())
    items = [AlertOut(**_alert_out(a)) for a in rows]
    return AlertPageOut(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/api/v1/alerts/{alert_id}",
    response_model=AlertDetailOut,
    responses=_ONE_ALERT_ERRORS,
    tags=["alerts"],
    summary="One alert with its history",
)
def api_alert(request: Request, alert_id: AlertId, who: Worker) -> AlertDetailOut:
    found = _visible_alert(request, who, alert_id)
    if found is None:
        raise HTTPException(404, f"no alert {alert_id}")
    return _detail_out(found)


@router.post(
    "/api/v1/alerts/{alert_id}/move",
    response_model=AlertDetailOut,
    responses={
        **_ONE_ALERT_ERRORS,
        400: {"model": ErrorOut, "description": "The body could not be read (not UTF-8 JSON)."},
        409: {
            "model": ErrorOut,
            "description": "The workflow does not allow this move, or it moved meanwhile.",
        },
    },
    dependencies=[Depends(check_csrf)],
    tags=["alerts"],
    summary="Move an alert along the workflow",
)
def api_move(request: Request, alert_id: AlertId, body: MoveIn, who: Worker) -> AlertDetailOut:
    """open → acknowledged | closed; acknowledged → called_back | closed; called_back → closed;
    closed → open. Browser sessions send ``X-CSRF-Token``; API tokens need not.
    """
    engine = context(request).engine
    if _visible_alert(request, who, alert_id) is None:
        raise HTTPException(404, f"no alert {alert_id}")
    expected = body.expected_from.value if body.expected_from is not None else None
    try:
        move(engine, alert_id, body.to.value, who.name, body.note, expected_from=expected)
    except AlertNotFound:
        raise HTTPException(404, f"no alert {alert_id}") from None
    except AlertTransitionError as exc:
        raise HTTPException(409, str(exc)) from None
    found = get_alert(engine, alert_id)
    assert found is not None  # alerts are never deleted
    return _detail_out(found)


# -- pages -----------------------------------------------------------------------------------------


def _local_time(request: Request) -> Any:
    tz = context(request).settings.tz

    def local(at: datetime | None) -> str:
        return "" if at is None else _utc(at).astimezone(tz).strftime("%Y-%m-%d %H:%M")

    return local


def _labels(request: Request) -> dict[str, Any]:
    return {
        "state_labels": STATE_LABELS,
        "reason_labels": REASON_LABELS,
        "action_labels": ACTION_LABELS,
        "local": _local_time(request),
    }


def _not_found(request: Request, alert_id: int) -> HTMLResponse:
    return render(request, "error.html", 404, title="No such alert", message=f"There is no alert {alert_id}.")


@router.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
def alerts_page(
    request: Request,
    who: Worker,
    state: str | None = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    engine = context(request).engine
    states = [s.value for s in AlertState]
    wanted = state or None
    if wanted is not None and wanted not in states:
        return render(
            request,
            "error.html",
            400,
            title="Unknown state",
            message=f"Alerts can be filtered by {', '.join(states)}.",
        )
    agents = _scope(request, who)
    counts = state_counts(engine, agents=agents)
    total = counts.get(wanted, 0) if wanted is not None else sum(counts.values())
    rows = list_alerts(engine, agents=agents, state=wanted, limit=PAGE_SIZE, offset=offset)
    return render(
        request,
        "alerts.html",
        alerts=rows,
        states=states,
        state=wanted,
        counts=counts,
        all_count=sum(counts.values()),
        total=total,
        offset=offset,
        page_size=PAGE_SIZE,
        **_labels(request),
    )


def _alert_page(
    request: Request, found: AlertDetail, status_code: int = 200, error: str | None = None, note: str = ""
) -> HTMLResponse:
    return render(
        request,
        "alert.html",
        status_code,
        alert=found.alert,
        events=found.events,
        next_states=next_states(found.alert.state),
        error=error,
        note=note,
        max_note=MAX_NOTE,
        **_labels(request),
    )


@router.get("/alerts/{alert_id}", response_class=HTMLResponse, include_in_schema=False)
def alert_page(request: Request, alert_id: int, who: Worker) -> Response:
    found = _visible_alert(request, who, alert_id) if 1 <= alert_id <= MAX_ID else None
    if found is None:
        return _not_found(request, alert_id)
    return _alert_page(request, found)


@router.post("/alerts/{alert_id}/move", include_in_schema=False, dependencies=[Depends(check_csrf)])
def alert_move_form(
    request: Request,
    alert_id: int,
    who: Worker,
    to: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    seen: Annotated[str | None, Form(alias="from")] = None,
) -> Response:
    """On success back to the alert (POST-redirect-GET); on a refused move the same page with the
    reason and the note still in the box, so nothing typed is lost.
    """
    found = _visible_alert(request, who, alert_id) if 1 <= alert_id <= MAX_ID else None
    if found is None:
        return _not_found(request, alert_id)
    states = {s.value for s in AlertState}
    if to not in states:
        return _alert_page(request, found, 400, error="Choose what to do with the alert.", note=note)
    expected = seen if seen in states else None
    try:
        move(context(request).engine, alert_id, to, who.name, note, expected_from=expected)
    except NoteError as exc:
        return _alert_page(request, found, 400, error=str(exc), note=note)
    except AlertTransitionError as exc:
        fresh = get_alert(context(request).engine, alert_id) or found
        return _alert_page(request, fresh, 409, error=str(exc), note=note)
    except AlertNotFound:
        return _not_found(request, alert_id)
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)
