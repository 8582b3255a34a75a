"""The dashboard's pages, exports, voice comments and admin views (server-rendered, one router).

Every route asks ``scoring.web.access`` who may see what; the figures come from ``build_report`` and
the tallies through ``page_data``, so a page, its export button and ``csat report`` show the same
numbers. A supervisor or trainer sees their teams' agents; queue-wide figures are for everyone but
agents; an agent sees only their own page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any, get_args
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import select

from ivr.models import Answer, Role
from ivr.settings import ExportFormat, ReportBy, ReportPeriod, Settings
from scoring import exports
from scoring.agent_report import agent_report_data, render_agent_report
from scoring.report import Report, build_report
from scoring.tallies import ReportQuery
from scoring.teams import known_agents, team_map
from scoring.web import page_data as pd
from scoring.web.access import (
    Viewer,
    can_manage_users,
    can_see_agent,
    can_see_overview,
    can_see_team,
    visible_agents,
)
from scoring.web.deps import Forbidden, WebContext, check_csrf, context, current_viewer, render, require
from scoring.web.users import UserError, add_user, list_users
from scoring.xlsx_export import render_xlsx


class PageError(Exception):
    """A page that cannot be shown for a reason the user can act on (bad date, unknown agent)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class _PageRoute(APIRoute):
    """Turns ``PageError`` and ``BadQuery`` into the site's error page instead of a bare JSON body."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except pd.BadQuery as exc:
                return render(request, "error.html", 400, title="Cannot show that", message=str(exc))
            except PageError as exc:
                return render(request, "error.html", exc.status, title=exc.title, message=exc.message)

        return route


router = APIRouter(route_class=_PageRoute, include_in_schema=False)

Overseer = Annotated[Viewer, Depends(require(can_see_overview))]
Admin = Annotated[Viewer, Depends(require(can_manage_users, "Only an admin can open this page."))]
Signed = Annotated[Viewer, Depends(current_viewer)]
From = Annotated[str | None, Query(alias="from")]
OWN_TEAMS = "You can see only the agents of your own teams."
LONG_TABS = ["7d", "30d", "this_month", "last_month"]

MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


# -- helpers ------------------------------------------------------------------------------------------


def _scope(ctx: WebContext, viewer: Viewer, team_of: dict[str, str]) -> set[str] | None:
    """The agents whose answers a viewer's centre-level figures cover; None = everyone (admin)."""
    if viewer.is_admin:
        return None
    return visible_agents(viewer, known_agents(ctx.engine) | set(team_of), team_of)


def _visible_teams(viewer: Viewer, team_of: dict[str, str], settings: Settings) -> list[str]:
    teams = set(team_of.values()) | set(settings.teams)
    return sorted(t for t in teams if can_see_team(viewer, t))


@dataclass(frozen=True)
class RangeArgs:
    key: str | None
    date_from: str | None
    date_to: str | None


def _range_args(range: str | None = None, date_from: From = None, to: str | None = None) -> RangeArgs:
    """``?range=7d`` or ``?from=…&to=…``, the same on every page and export."""
    return RangeArgs(range, date_from, to)


Dates = Annotated[RangeArgs, Depends(_range_args)]


def _range(settings: Settings, args: RangeArgs, default: str) -> pd.DateRange:
    return pd.pick_range(args.key, args.date_from, args.date_to, pd.range_today(settings), default)


def _download(data: bytes, fmt: str, name: str) -> Response:
    return Response(
        data,
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


def _keepers(
    viewer: Viewer, team_of: dict[str, str], team: str | None = None
) -> tuple[pd.Keep | None, pd.Keep | None]:
    """Which agent rows and team rows a report keeps; (None, None) = the whole centre, unfiltered."""
    if viewer.is_admin and team is None:
        return None, None

    def agent_ok(agent: str) -> bool:
        return can_see_agent(viewer, agent, team_of) and (team is None or team_of.get(agent) == team)

    def team_ok(name: str) -> bool:
        return can_see_team(viewer, name) and (team is None or name == team)

    return agent_ok, team_ok


def _agent_rows(report: Report, team_of: dict[str, str]) -> list[pd.RowView]:
    return [pd.row_view(r, link=pd.agent_link(r.group), team=team_of.get(r.group)) for r in report.rows]


def _total(report: Report, limited: bool, everyone: str, shown: str) -> pd.RowView | None:
    if not report.totals:
        return None
    return pd.row_view(report.totals[0], name=shown if limited else everyone)


# -- overview -----------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, viewer: Signed, dates: Dates) -> Response:
    if viewer.role == Role.AGENT and viewer.agent:
        return RedirectResponse(pd.agent_link(viewer.agent), status_code=303)
    if not can_see_overview(viewer):
        raise Forbidden()
    ctx = context(request)
    rng = _range(ctx.settings, dates, "7d")
    team_of = team_map(ctx.engine, ctx.settings)
    agents = _scope(ctx, viewer, team_of)
    rolled = pd.fresh_rollups(ctx.engine, ctx.settings)
    tallies = pd.tallies_for(
        ctx.engine, ctx.settings, pd.daily_query("queue", rng), rolled_through=rolled, agents=agents
    )
    summary = pd.summarise(pd.by_day(tallies), rng, ctx.settings, ctx.settings.target_for(None))
    queues = [
        pd.row_view(r, link=pd.queue_link(r.group))
        for r in pd.ranked_rows(pd.by_group(tallies), "queue", rng, ctx.settings)
    ]
    return render(
        request,
        "overview.html",
        rng=rng,
        tabs=pd.tabs(["today", "7d", "30d"], rng),
        summary=summary,
        queues=queues,
        scope=None if agents is None else sorted(viewer.teams),
        exports=pd.export_links("queue", rng),
    )


# -- leaderboard --------------------------------------------------------------------------------------


@router.get("/leaderboard", response_class=HTMLResponse)
def leaderboard(
    request: Request,
    viewer: Overseer,
    dates: Dates,
    queue: str | None = None,
    team: str | None = None,
    question: str | None = None,
) -> Response:
    ctx = context(request)
    rng = _range(ctx.settings, dates, "30d")
    queue, team, question = queue or None, team or None, question or None
    if team is not None and not can_see_team(viewer, team):
        raise Forbidden(f"You do not have access to team {team!r}.")
    team_of = team_map(ctx.engine, ctx.settings)
    query = ReportQuery(by="agent", date_from=rng.first, date_to=rng.last, queue=queue, question=question)
    keep_agent, _ = _keepers(viewer, team_of, team)
    report = pd.report_for(ctx.engine, ctx.settings, query, keep_agent=keep_agent)
    return render(
        request,
        "leaderboard.html",
        rng=rng,
        tabs=pd.tabs(LONG_TABS, rng, queue=queue, team=team, question=question),
        rows=_agent_rows(report, team_of),
        everyone=_total(report, keep_agent is not None, "Everyone (whole centre)", "All agents listed"),
        filters={"queue": queue, "team": team, "question": question},
        queues=pd.known_queues(ctx.engine, ctx.settings),
        teams=_visible_teams(viewer, team_of, ctx.settings),
        questions=pd.rating_questions(ctx.settings),
        exports=pd.export_links("agent", rng, queue=queue, question=question, team=team),
    )


# -- agent --------------------------------------------------------------------------------------------


@router.get("/agents/{name:path}", response_class=HTMLResponse)
def agent_page(
    request: Request,
    name: str,
    viewer: Signed,
    dates: Dates,
    page: int = 1,
) -> Response:
    ctx = context(request)
    team_of = team_map(ctx.engine, ctx.settings)
    if not can_see_agent(viewer, name, team_of):
        raise Forbidden("You can see only your own page." if viewer.role == Role.AGENT else OWN_TEAMS)
    if name not in team_of and name not in known_agents(ctx.engine):
        raise PageError(404, "No such agent", f"No answers or calls are stored for agent {name!r}.")
    rng = _range(ctx.settings, dates, "90d")
    data = agent_report_data(ctx.engine, ctx.settings, name, rng.first, rng.last)
    calls = pd.agent_calls(ctx.engine, ctx.settings, name, rng.first, rng.last, page)
    return render(
        request,
        "agent.html",
        name=name,
        data=data,
        rng=rng,
        tabs=pd.tabs(["30d", "90d", "this_month", "last_month"], rng),
        mine=pd.row_view(data.row) if data.row else None,
        comparisons=pd.comparisons(data, links=viewer.role != Role.AGENT),
        trend=pd.weekly_trend(data),
        distribution=pd.distribution_chart(data.distribution),
        dist_rows=[(v, pd.CSAT_WORDS[v], data.distribution[v]) for v in range(1, 6)],
        calls=calls,
        range_qs=pd.query_string(**pd.range_params(rng)),
        pdf_link=f"/export/agent-report/{quote(name, safe='')}.pdf?"
        + pd.query_string(**{"from": rng.first.isoformat(), "to": rng.last.isoformat()}),
    )


@router.get("/recordings/{answer_id}")
def recording(request: Request, answer_id: int, viewer: Signed) -> Response:
    """A voice comment, streamed to the browser's player; only for a viewer who may see its agent."""
    ctx = context(request)
    with ctx.engine.connect() as conn:
        row = conn.execute(select(Answer.agent, Answer.recording).where(Answer.id == answer_id)).first()
    if row is None or not row.recording:
        raise PageError(404, "No recording", "There is no voice comment with this number.")
    if not can_see_agent(viewer, row.agent or "", team_map(ctx.engine, ctx.settings)):
        raise Forbidden("You may not listen to this agent's comments.")
    path = pd.recording_file(ctx.settings.recordings_dir, row.recording)
    if path is None:
        raise PageError(404, "No recording", "The recording file is missing.")
    return FileResponse(path, media_type="audio/wav")


# -- queues and teams ---------------------------------------------------------------------------------


@router.get("/queues", response_class=HTMLResponse)
def queues(request: Request, viewer: Overseer, dates: Dates) -> Response:
    ctx = context(request)
    rng = _range(ctx.settings, dates, "30d")
    query = ReportQuery(by="queue", date_from=rng.first, date_to=rng.last)
    report = build_report(ctx.engine, ctx.settings, query)
    seen = {r.group for r in report.rows}
    return render(
        request,
        "queues.html",
        rng=rng,
        tabs=pd.tabs(LONG_TABS, rng),
        rows=[pd.row_view(r, link=pd.queue_link(r.group)) for r in report.rows],
        quiet=[q for q in pd.known_queues(ctx.engine, ctx.settings) if q not in seen],
        everyone=_total(report, False, "Everyone", ""),
        exports=pd.export_links("queue", rng),
    )


@router.get("/queues/{name:path}", response_class=HTMLResponse)
def queue_page(request: Request, name: str, viewer: Overseer, dates: Dates) -> Response:
    ctx = context(request)
    if name not in pd.known_queues(ctx.engine, ctx.settings):
        raise PageError(404, "No such queue", f"No calls or answers are stored for queue {name!r}.")
    rng = _range(ctx.settings, dates, "30d")
    rolled = pd.fresh_rollups(ctx.engine, ctx.settings)
    tallies = pd.tallies_for(
        ctx.engine, ctx.settings, pd.daily_query("queue", rng, queue=name), rolled_through=rolled
    )
    team_of = team_map(ctx.engine, ctx.settings)
    keep_agent, _ = _keepers(viewer, team_of)
    query = ReportQuery(by="agent", date_from=rng.first, date_to=rng.last, queue=name)
    report = pd.report_for(ctx.engine, ctx.settings, query, keep_agent=keep_agent, refresh=False)
    return render(
        request,
        "queue.html",
        name=name,
        rng=rng,
        tabs=pd.tabs(LONG_TABS, rng),
        summary=pd.summarise(pd.by_day(tallies), rng, ctx.settings, ctx.settings.target_for(name)),
        rows=_agent_rows(report, team_of),
        all_agents=keep_agent is not None,
        exports=pd.export_links("agent", rng, queue=name),
    )


@router.get("/teams", response_class=HTMLResponse)
def teams(request: Request, viewer: Overseer, dates: Dates) -> Response:
    ctx = context(request)
    rng = _range(ctx.settings, dates, "30d")
    team_of = team_map(ctx.engine, ctx.settings)
    _, keep_team = _keepers(viewer, team_of)
    query = ReportQuery(by="team", date_from=rng.first, date_to=rng.last)
    report = pd.report_for(ctx.engine, ctx.settings, query, keep_team=keep_team)
    seen = {r.group for r in report.rows}
    return render(
        request,
        "teams.html",
        rng=rng,
        tabs=pd.tabs(LONG_TABS, rng),
        rows=[pd.row_view(r, link=pd.team_link(r.group)) for r in report.rows],
        quiet=[t for t in _visible_teams(viewer, team_of, ctx.settings) if t not in seen],
        everyone=_total(report, keep_team is not None, "Everyone", "All teams listed"),
        exports=pd.export_links("team", rng),
    )


@router.get("/teams/{name:path}", response_class=HTMLResponse)
def team_page(request: Request, name: str, viewer: Signed, dates: Dates) -> Response:
    if not can_see_team(viewer, name):
        raise Forbidden(f"You do not have access to team {name!r}.")
    ctx = context(request)
    team_of = team_map(ctx.engine, ctx.settings)
    if name not in set(team_of.values()) | set(ctx.settings.teams):
        raise PageError(404, "No such team", f"No agent is in team {name!r}.")
    rng = _range(ctx.settings, dates, "30d")
    rolled = pd.fresh_rollups(ctx.engine, ctx.settings)
    tallies = pd.tallies_for(
        ctx.engine, ctx.settings, pd.daily_query("team", rng), rolled_through=rolled, team_of=team_of
    )
    mine = {k: t for k, t in tallies.items() if k[0] == name}
    keep_agent, _ = _keepers(viewer, team_of, name)
    query = ReportQuery(by="agent", date_from=rng.first, date_to=rng.last)
    report = pd.report_for(ctx.engine, ctx.settings, query, keep_agent=keep_agent, refresh=False)
    seen = {r.group for r in report.rows}
    return render(
        request,
        "team.html",
        name=name,
        rng=rng,
        tabs=pd.tabs(LONG_TABS, rng),
        summary=pd.summarise(pd.by_day(mine), rng, ctx.settings, ctx.settings.target_for(None)),
        rows=_agent_rows(report, team_of),
        all_agents=False,
        quiet=sorted(a for a, t in team_of.items() if t == name and a not in seen),
        exports=pd.export_links("agent", rng, team=name),
    )


# -- exports ------------------------------------------------------------------------------------------


@router.get("/export/report.{fmt}")
def export_report(
    request: Request,
    fmt: ExportFormat,
    viewer: Overseer,
    dates: Dates,
    by: ReportBy = "agent",
    queue: str | None = None,
    question: str | None = None,
    team: str | None = None,
    period: ReportPeriod | None = None,
) -> Response:
    """The CLI's report files; a supervisor's or trainer's agent and team rows are cut to their teams."""
    ctx = context(request)
    rng = _range(ctx.settings, dates, "30d")
    queue, question, team = queue or None, question or None, team or None
    if team is not None and not can_see_team(viewer, team):
        raise Forbidden(f"You do not have access to team {team!r}.")
    query = ReportQuery(
        by=by, date_from=rng.first, date_to=rng.last, period=period, queue=queue, question=question
    )
    dates_part = (rng.first.isoformat(), rng.last.isoformat())
    name = pd.file_name("csat", by, queue, team, question, period, *dates_part)
    keep_agent, keep_team = _keepers(viewer, team_map(ctx.engine, ctx.settings), team)
    if keep_agent is None:  # the whole centre: exactly the CLI's file
        return _download(exports.render(ctx.engine, ctx.settings, query, fmt), fmt, name)

    def scoped(q: ReportQuery, refresh: bool) -> Report:
        return pd.report_for(
            ctx.engine, ctx.settings, q, keep_agent=keep_agent, keep_team=keep_team, refresh=refresh
        )

    report = scoped(query, True)
    if fmt != "xlsx":
        return _download(exports.render(ctx.engine, ctx.settings, query, fmt, report=report), fmt, name)
    # As exports.render does (a sheet per grouping, the asked-for one first), each sheet scoped.
    others = [scoped(replace(query, by=b), False) for b in get_args(ReportBy) if b != by]
    return _download(render_xlsx([report, *others]), fmt, name)


@router.get("/export/agent-report/{name:path}.pdf")
def export_agent_report(
    request: Request,
    name: str,
    viewer: Signed,
    dates: Dates,
) -> Response:
    ctx = context(request)
    if not can_see_agent(viewer, name, team_map(ctx.engine, ctx.settings)):
        raise Forbidden("You may download only the reports of agents you can see.")
    if name not in known_agents(ctx.engine):
        raise PageError(404, "No such agent", f"No answers or calls are stored for agent {name!r}.")
    rng = _range(ctx.settings, dates, "30d")
    data = agent_report_data(ctx.engine, ctx.settings, name, rng.first, rng.last)
    file = pd.file_name("csat-agent", name, rng.first.isoformat(), rng.last.isoformat())
    return _download(render_agent_report(data), "pdf", file)


# -- admin --------------------------------------------------------------------------------------------


def _users_page(request: Request, status: int = 200, **values: Any) -> Response:
    ctx = context(request)
    form = {"name": "", "role": "agent", "teams": "", "agent": "", **values.pop("form", {})}
    return render(
        request,
        "admin_users.html",
        status,
        users=list_users(ctx.engine),
        roles=[r.value for r in Role],
        teams=sorted(set(team_map(ctx.engine, ctx.settings).values()) | set(ctx.settings.teams)),
        form=form,
        **values,
    )


@router.get("/admin/users", response_class=HTMLResponse)
def admin_users(request: Request, viewer: Admin, added: str | None = None) -> Response:
    return _users_page(request, added=added, error=None)


@router.post("/admin/users", dependencies=[Depends(check_csrf)])
def admin_add_user(
    request: Request,
    viewer: Admin,
    name: Annotated[str, Form()],
    role: Annotated[str, Form()],
    password: Annotated[str, Form()],
    teams: Annotated[str, Form()] = "",
    agent: Annotated[str, Form()] = "",
) -> Response:
    team_list = [t for t in teams.replace(",", " ").split() if t]
    try:
        add_user(context(request).engine, name, role, password, teams=team_list, agent=agent.strip() or None)
    except UserError as exc:
        form = {"name": name, "role": role, "teams": teams, "agent": agent}
        return _users_page(request, 400, added=None, error=str(exc), form=form)
    return RedirectResponse(f"/admin/users?{pd.query_string(added=name.strip())}", status_code=303)


@router.get("/admin/settings", response_class=HTMLResponse)
def admin_settings(request: Request, viewer: Admin) -> Response:
    ctx = context(request)
    return render(
        request,
        "admin_settings.html",
        rows=pd.redacted_settings(ctx.settings),
        generated=datetime.now(ctx.settings.tz),
    )
