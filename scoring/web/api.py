"""``/api/v1``: reports, agents, calls and answers as JSON, for scripts and for anyone who wants the numbers.

Every route answers the same question first: which agents may this viewer see
(:func:`scoring.web.access.can_see_agent`), and filters in SQL or on the report's rows accordingly. A
report is the very document ``csat report --format json`` writes (:func:`scoring.exports.report_as_json`),
minus the rows the viewer may not see, so a script can switch between the CLI and the API freely.

Parameters are typed and bounded (dates between 2000 and 2099, page sizes 1–1000, enums, no control
characters in names) so that nonsense gets a 422 here rather than an error deep in SQL: the API is
fuzzed against its own OpenAPI document. Authentication is the session cookie or
``Authorization: Bearer`` with a token from ``csat token create``; both are declared in the schema.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyCookie, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.exc import SQLAlchemyError

from ivr.models import Answer, Call, Role, SurveyState
from ivr.settings import QuestionType, ReportBy, ReportPeriod
from scoring.exports import report_as_json
from scoring.periods import local_day_bounds, local_today
from scoring.report import Report, build_report, default_range
from scoring.tallies import ReportQuery
from scoring.teams import known_agents, team_map
from scoring.web.access import Viewer, can_see_agent, can_see_overview, can_see_team
from scoring.web.deps import Forbidden, WebContext, context, current_viewer

log = logging.getLogger("csat.web.api")

#: Documents the two ways in; neither raises by itself (``current_viewer`` decides), they only make
#: the OpenAPI document say how to authenticate and give the docs page its "Authorize" button.
_bearer = HTTPBearer(auto_error=False, description="A token from `csat token create NAME`.")
_cookie = APIKeyCookie(name="csat_session", auto_error=False, description="The dashboard's sign-in.")

router = APIRouter(
    prefix="/api/v1",
    dependencies=[Security(_bearer), Security(_cookie)],
)

EARLIEST = date(2000, 1, 1)
LATEST = date(2099, 12, 31)
#: A report reads rolled-up days in one query but every day after the last rolled-up one with its own
#: queries; should the rollups be far behind, three years keeps the worst case to a few seconds.
MAX_REPORT_DAYS = 1098  # three years
MAX_OFFSET = 1_000_000_000
#: Names from Asterisk or the settings never hold control characters; PostgreSQL rejects NUL outright.
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*$"


# -- response models --------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Not signed in and no valid `Authorization: Bearer` token."},
    403: {"model": ErrorOut, "description": "Signed in, but this viewer may not see that."},
}


def _as_utc(value: datetime | None) -> datetime | None:
    """Stored times are naive UTC; the API says so with an offset, like the exports' ``Z``."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class ReportRowOut(BaseModel):
    """One row of a report: the same fields as the rows of ``csat report --format json``."""

    group: str = Field(description="The agent, queue, team or question; `(all)` in totals.")
    period: str | None = Field(description="2026-11-23, 2026-W48 or 2026-11; null for the whole range.")
    responses: int
    csat_pct: float | None = Field(description="Share of 4–5 ratings, 0–100; null below min_responses.")
    csat_pct_low: float | None
    csat_pct_high: float | None
    csat_mean: float | None
    csat_mean_low: float | None
    csat_mean_high: float | None
    nps: float | None
    nps_low: float | None
    nps_high: float | None
    nps_responses: int
    ces_mean: float | None
    ces_mean_low: float | None
    ces_mean_high: float | None
    ces_easy_pct: float | None
    fcr_pct: float | None
    fcr_pct_low: float | None
    fcr_pct_high: float | None
    handled: int | None
    eligible: int | None
    offered: int | None
    started: int | None
    completed: int | None
    partial: int | None
    no_input: int | None
    reach_pct: float | None
    comments: int
    band: str | None
    target_pct: float | None
    rank: int | None
    flag: str | None
    distribution: dict[str, int] = Field(description="CSAT answers per rating, keys '1' … '5'.")


class ReportOut(BaseModel):
    """The document ``csat report --format json`` writes, limited to the rows the viewer may see."""

    model_config = ConfigDict(populate_by_name=True)

    title: str
    by: ReportBy
    period: ReportPeriod | None
    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    queue: str | None
    question: str | None
    timezone: str
    min_responses: int
    generated_at: UtcDatetime
    rows: list[ReportRowOut]
    totals: list[ReportRowOut] = Field(
        description="Everyone together per period (centre-wide); empty for the agent role."
    )


class AgentSummary(BaseModel):
    name: str
    team: str | None
    responses: int
    csat_pct: float | None
    csat_pct_low: float | None
    csat_pct_high: float | None
    csat_mean: float | None
    nps: float | None
    fcr_pct: float | None
    band: str | None
    flag: str | None


class AgentList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    agents: list[AgentSummary]


class AgentDetail(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    team: str | None
    date_from: date = Field(alias="from")
    date_to: date = Field(alias="to")
    figures: ReportRowOut | None = Field(description="The agent's row of the agent report; null: no calls.")
    by_queue: list[ReportRowOut] = Field(description="The agent's figures in each queue.")


class CallOut(BaseModel):
    uniqueid: str
    linkedid: str
    queue: str | None
    agent: str | None
    joined_at: UtcDatetime | None
    connected_at: UtcDatetime | None
    ended_at: UtcDatetime | None
    hold_seconds: int | None
    talk_seconds: int | None
    end_reason: str | None
    offer: bool | None
    offer_reason: str | None
    survey_name: str | None
    survey_state: SurveyState
    reason: str | None
    survey_started_at: UtcDatetime | None
    survey_ended_at: UtcDatetime | None
    answers: int


class CallPage(BaseModel):
    total: int = Field(description="Calls matching the filters, all pages together.")
    limit: int
    offset: int
    items: list[CallOut]


class AnswerOut(BaseModel):
    id: int
    uniqueid: str
    linkedid: str
    queue: str | None
    agent: str | None
    survey: str
    question: str
    question_type: str
    position: int
    value: int | None = Field(description="The key pressed, as a number; null for a voice comment.")
    has_recording: bool
    tries: int
    answered_at: UtcDatetime


class AnswerPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[AnswerOut]


# -- parameters -------------------------------------------------------------------------------------

DateParam = Annotated[
    date | None, Query(ge=EARLIEST, le=LATEST, description="YYYY-MM-DD, a local day (settings' time zone).")
]
NameParam = Annotated[str | None, Query(min_length=1, max_length=128, pattern=NAME_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip.")]


@dataclass(frozen=True)
class DateRange:
    first: date | None
    last: date | None


def _invalid(field: str, message: str, value: object) -> RequestValidationError:
    """A 422 shaped like FastAPI's own, for rules no single parameter can check."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", field), "msg": message, "input": str(value)}]
    )


def date_range(
    date_from: Annotated[DateParam, Query(alias="from")] = None,
    date_to: Annotated[DateParam, Query(alias="to")] = None,
) -> DateRange:
    if date_from is not None and date_to is not None and date_to < date_from:
        raise _invalid("to", f"to ({date_to}) is before from ({date_from})", date_to)
    return DateRange(date_from, date_to)


Viewing = Annotated[Viewer, Depends(current_viewer)]
Dates = Annotated[DateRange, Depends(date_range)]


def _ctx(request: Request) -> WebContext:
    return context(request)


Ctx = Annotated[WebContext, Depends(_ctx)]


# -- who sees what ----------------------------------------------------------------------------------


def visible_agents(ctx: WebContext, viewer: Viewer, team_of: dict[str, str] | None = None) -> set[str] | None:
    """The agents ``viewer`` may see, or None for "all of them" (admin), for SQL ``IN`` filters.

    Built from team membership rather than from the calls, so it costs one small query; an agent who
    is in no team is seen by admins only, exactly as :func:`can_see_agent` says.
    """
    if viewer.role == Role.ADMIN:
        return None
    team_of = team_of if team_of is not None else team_map(ctx.engine, ctx.settings)
    candidates = set(team_of) | ({viewer.agent} if viewer.agent else set())
    return {a for a in candidates if can_see_agent(viewer, a, team_of)}


def _check_agent(viewer: Viewer, agent: str, team_of: dict[str, str]) -> None:
    if not can_see_agent(viewer, agent, team_of):
        raise Forbidden(f"you may not see agent {agent!r}")


# -- reports ----------------------------------------------------------------------------------------

_refreshing = threading.Lock()


def _report(ctx: WebContext, query: ReportQuery, *, refresh: bool = True) -> Report:
    """``build_report`` as the CLI runs it, with two guards a web server needs.

    One rollup refresh at a time per process: two refreshes of the same day at once collide on the
    rollup tables' keys (PostgreSQL says so with an IntegrityError). A request that finds a refresh
    running skips its own; days not rolled up yet are read from the raw rows, so figures are the same.

    No reading of days that have not happened: each day after the last rolled-up one costs its own
    queries, so ``to=2099-12-31`` would take seconds per request for nothing. The range read stops at
    tomorrow (a day of slack for clocks); the document still shows the range that was asked for.
    """
    from scoring import rollups

    if refresh and _refreshing.acquire(blocking=False):
        try:
            rollups.refresh(ctx.engine, ctx.settings.tz)
        except SQLAlchemyError as exc:  # e.g. the scheduler refreshing at the same moment
            log.warning("rollups not refreshed for an API report", extra={"error": str(exc)[:200]})
        finally:
            _refreshing.release()
    horizon = local_today(ctx.settings.tz) + timedelta(days=1)
    if query.date_from > horizon:
        s = ctx.settings
        return Report(query, [], [], s.timezone, s.scoring.min_responses, datetime.now(UTC))
    read = replace(query, date_to=min(query.date_to, horizon))
    return replace(build_report(ctx.engine, ctx.settings, read, refresh=False), query=query)


def _resolve(ctx: WebContext, dates: DateRange, *, max_days: int | None = None) -> tuple[date, date]:
    """The CLI's rule: a missing end is today, a missing start 29 days before today."""
    default_first, default_last = default_range(ctx.settings)
    first, last = dates.first or default_first, dates.last or default_last
    if last < first:
        raise _invalid("to", f"to ({last}) is before from ({first})", last)
    if max_days is not None and (last - first).days + 1 > max_days:
        raise _invalid("to", f"at most {max_days} days per report; split the range", last)
    return first, last


@router.get(
    "/reports",
    response_model=ReportOut,
    responses=ERRORS,
    tags=["reports"],
    summary="A ranked report, as `csat report --format json`",
)
def get_report(
    ctx: Ctx,
    viewer: Viewing,
    dates: Dates,
    by: ReportBy = "agent",
    period: Annotated[ReportPeriod | None, Query(description="Split by day, week or month.")] = None,
    queue: NameParam = None,
    question: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NAME_PATTERN)] = None,
) -> dict[str, Any]:
    """Rows are limited to what the viewer may see: by=agent → their agents, by=team → their teams;
    by=queue and by=question are centre-wide views, not for the agent role. Without from/to: the last
    30 days including today (at most 1098 days per report)."""
    if viewer.role == Role.AGENT and by != "agent":
        raise Forbidden("the agent role sees its own scores only: use by=agent")
    first, last = _resolve(ctx, dates, max_days=MAX_REPORT_DAYS)
    query = ReportQuery(by=by, date_from=first, date_to=last, period=period, queue=queue, question=question)
    doc = report_as_json(_report(ctx, query))
    if by == "agent" and not viewer.is_admin:
        seen = visible_agents(ctx, viewer) or set()
        doc["rows"] = [r for r in doc["rows"] if r["group"] in seen]
    elif by == "team":
        doc["rows"] = [r for r in doc["rows"] if can_see_team(viewer, r["group"])]
    if not can_see_overview(viewer):
        doc["totals"] = []  # centre-wide figures are not an agent's to see
    return doc


# -- agents -----------------------------------------------------------------------------------------


def _summary(name: str, team: str | None, row: dict[str, Any] | None) -> AgentSummary:
    row = row or {}
    return AgentSummary(
        name=name,
        team=team,
        responses=row.get("responses", 0),
        **{
            k: row.get(k)
            for k in ("csat_pct", "csat_pct_low", "csat_pct_high", "csat_mean", "nps", "fcr_pct", "band")
        },
        flag=row.get("flag"),
    )


@router.get("/agents", response_model=AgentList, responses=ERRORS, tags=["agents"], summary="Agents")
def list_agents(ctx: Ctx, viewer: Viewing, dates: Dates) -> AgentList:
    """The agents the viewer may see, with their team and figures (default: the last 30 days)."""
    first, last = _resolve(ctx, dates, max_days=MAX_REPORT_DAYS)
    team_of = team_map(ctx.engine, ctx.settings)
    names = known_agents(ctx.engine) | set(team_of)
    seen = visible_agents(ctx, viewer, team_of)
    names = names if seen is None else names & seen
    doc = report_as_json(_report(ctx, ReportQuery(by="agent", date_from=first, date_to=last)))
    rows = {r["group"]: r for r in doc["rows"]}
    agents = [_summary(n, team_of.get(n), rows.get(n)) for n in sorted(names)]
    return AgentList(date_from=first, date_to=last, agents=agents)


@router.get(
    "/agents/{name:path}",
    response_model=AgentDetail,
    responses={**ERRORS, 404: {"model": ErrorOut, "description": "No agent of that name."}},
    tags=["agents"],
    summary="One agent",
)
def get_agent(ctx: Ctx, viewer: Viewing, name: str, dates: Dates) -> AgentDetail:
    """One agent's figures overall and per queue. 403 before 404: a name one may not see is not
    confirmed to exist. Names may hold '/', as Asterisk's default member names do (PJSIP/1001)."""
    team_of = team_map(ctx.engine, ctx.settings)
    _check_agent(viewer, name, team_of)
    if name not in known_agents(ctx.engine) and name not in team_of:
        raise HTTPException(404, f"no agent named {name!r}")
    first, last = _resolve(ctx, dates, max_days=MAX_REPORT_DAYS)
    overall = report_as_json(_report(ctx, ReportQuery(by="agent", date_from=first, date_to=last)))
    queues = report_as_json(
        _report(ctx, ReportQuery(by="queue", date_from=first, date_to=last, agent=name), refresh=False)
    )
    row = next((r for r in overall["rows"] if r["group"] == name), None)
    return AgentDetail(
        name=name,
        team=team_of.get(name),
        date_from=first,
        date_to=last,
        figures=ReportRowOut.model_validate(row) if row else None,
        by_queue=[ReportRowOut.model_validate(r) for r in queues["rows"]],
    )


# -- calls and answers ------------------------------------------------------------------------------


def _agent_filter(
    ctx: WebContext, viewer: Viewer, column: Any, agent: str | None
) -> list[ColumnElement[bool]]:
    """``agent = :agent`` if asked for (403 if not visible), and always ``agent IN (:visible…)``."""
    team_of = team_map(ctx.engine, ctx.settings)
    out: list[ColumnElement[bool]] = []
    if agent is not None:
        _check_agent(viewer, agent, team_of)
        out.append(column == agent)
    seen = visible_agents(ctx, viewer, team_of)
    if seen is not None:
        out.append(column.in_(sorted(seen)))
    return out


def _day_filter(ctx: WebContext, column: Any, dates: DateRange) -> list[ColumnElement[bool]]:
    """Local days, as reports count them, turned into the naive-UTC bounds the rows are stored in."""
    out: list[ColumnElement[bool]] = []
    if dates.first is not None:
        out.append(column >= local_day_bounds(dates.first, ctx.settings.tz)[0])
    if dates.last is not None:
        out.append(column < local_day_bounds(dates.last, ctx.settings.tz)[1])
    return out


def _page(
    ctx: WebContext, stmt: Select[Any], order: list[Any], limit: int, offset: int
) -> tuple[int, list[Any]]:
    with ctx.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
        rows = conn.execute(stmt.order_by(*order).limit(limit).offset(offset)).all()
    return int(total), list(rows)


@router.get("/calls", response_model=CallPage, responses=ERRORS, tags=["calls"], summary="Calls")
def list_calls(
    ctx: Ctx,
    viewer: Viewing,
    dates: Dates,
    agent: NameParam = None,
    queue: NameParam = None,
    state: Annotated[SurveyState | None, Query(description="Only calls in this survey state.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> CallPage:
    """Calls of the agents the viewer may see, newest first. A call's time is when the agent answered
    (else when its survey started, else when the caller joined the queue); from/to are local days."""
    when = func.coalesce(Call.connected_at, Call.survey_started_at, Call.joined_at)
    where = [*_agent_filter(ctx, viewer, Call.agent, agent), *_day_filter(ctx, when, dates)]
    if queue is not None:
        where.append(Call.queue == queue)
    if state is not None:
        where.append(Call.survey_state == state.value)
    columns = [c for c in Call.__table__.c if c.name != "caller_hash"]  # type: ignore[attr-defined]
    stmt = select(*columns).where(*where)
    total, rows = _page(ctx, stmt, [when.desc().nulls_last(), Call.uniqueid.desc()], limit, offset)  # type: ignore[attr-defined]
    items = [CallOut.model_validate({**r._mapping, "answers": r.answers_count}) for r in rows]
    return CallPage(total=total, limit=limit, offset=offset, items=items)


@router.get("/answers", response_model=AnswerPage, responses=ERRORS, tags=["answers"], summary="Answers")
def list_answers(
    ctx: Ctx,
    viewer: Viewing,
    dates: Dates,
    agent: NameParam = None,
    queue: NameParam = None,
    question: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NAME_PATTERN)] = None,
    question_type: QuestionType | None = None,
    call: Annotated[
        str | None, Query(min_length=1, max_length=64, pattern=NAME_PATTERN, description="A call's uniqueid.")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AnswerPage:
    """Answers given about the agents the viewer may see, newest first; from/to are local days."""
    where = [*_agent_filter(ctx, viewer, Answer.agent, agent), *_day_filter(ctx, Answer.answered_at, dates)]
    for column, value in (
        (Answer.queue, queue),
        (Answer.question, question),
        (Answer.question_type, question_type),
        (Answer.call_uniqueid, call),
    ):
        if value is not None:
            where.append(column == value)
    stmt = select(*Answer.__table__.c).where(*where)  # type: ignore[attr-defined]
    total, rows = _page(ctx, stmt, [Answer.answered_at.desc(), Answer.id.desc()], limit, offset)  # type: ignore[attr-defined]
    items = [
        AnswerOut.model_validate(
            {**r._mapping, "uniqueid": r.call_uniqueid, "has_recording": r.recording is not None}
        )
        for r in rows
    ]
    return AnswerPage(total=total, limit=limit, offset=offset, items=items)
