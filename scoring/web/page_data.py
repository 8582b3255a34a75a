"""What the dashboard templates need, built outside the routes so that it can be tested without HTTP.

Templates only print: every figure arrives here already formatted with its interval and its
"insufficient data" state (``Shown``), bars arrive as percentages of their width (``Bar``), and charts
arrive as plain dicts that the page embeds as JSON for ``static/charts.js``. The numbers themselves
come from the same tallies and ``ReportRow``s as ``csat report``, so the page and the CLI agree.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from sqlalchemy import Engine, case, desc, func, select
from sqlalchemy.engine import make_url

from ivr.models import Answer, Call
from ivr.queries import calls_with_answers
from ivr.settings import ReportBy, ReportPeriod, Settings
from scoring import rollups
from scoring.figures import Estimate, GroupFigures, Tally, figures_for
from scoring.periods import days, local_day_bounds, local_today, period_label
from scoring.report import Report, ReportRow, build_report, rows_from_tallies
from scoring.tallies import GroupKey, ReportQuery, load_tallies
from scoring.teams import team_map

if TYPE_CHECKING:  # the agent report pulls in matplotlib and fpdf; the pages import it themselves
    from scoring.agent_report import AgentReportData

DIST_COLOURS = {1: "#c62828", 2: "#ef6c00", 3: "#9e9e9e", 4: "#7cb342", 5: "#2e7d32"}
CSAT_WORDS = {1: "very dissatisfied", 2: "dissatisfied", 3: "neutral", 4: "satisfied", 5: "very satisfied"}
CALLS_PER_PAGE = 50


class BadQuery(ValueError):
    """A query string the page cannot use (a malformed date, from after to); shown as a 400 page."""


# -- date ranges --------------------------------------------------------------------------------------

PRESETS: dict[str, str] = {
    "today": "Today",
    "7d": "7 days",
    "30d": "30 days",
    "90d": "90 days",
    "this_month": "This month",
    "last_month": "Last month",
}


@dataclass(frozen=True)
class DateRange:
    first: date
    last: date  # inclusive
    key: str  # a PRESETS key, or "custom"

    @property
    def label(self) -> str:
        if self.key in PRESETS:
            return f"{PRESETS[self.key]} ({self.first.isoformat()} to {self.last.isoformat()})"
        return f"{self.first.isoformat()} to {self.last.isoformat()}"

    @property
    def days(self) -> list[date]:
        return list(days(self.first, self.last))


def preset_range(key: str, today: date) -> DateRange:
    if key == "today":
        return DateRange(today, today, key)
    if key in ("7d", "30d", "90d"):
        return DateRange(today - timedelta(days=int(key[:-1]) - 1), today, key)
    if key == "this_month":
        return DateRange(today.replace(day=1), today, key)
    if key == "last_month":
        last = today.replace(day=1) - timedelta(days=1)
        return DateRange(last.replace(day=1), last, key)
    raise BadQuery(f"unknown range {key!r}; use one of {', '.join(PRESETS)}")


def _parse_day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"{name} must be a date like 2026-11-30, got {text!r}") from None


def pick_range(
    key: str | None, date_from: str | None, date_to: str | None, today: date, default: str
) -> DateRange:
    """A preset by name, else from/to (``range=custom`` or no range), else the page's default.

    The end is clamped to today: future days hold no answers, and each one would cost a raw-table
    query (only finished days are rolled up).
    """
    if key and key != "custom":
        return preset_range(key, today)
    if date_from or date_to:
        last = min(_parse_day(date_to, "to"), today) if date_to else today
        first = _parse_day(date_from, "from") if date_from else last - timedelta(days=29)
        if first > last:
            raise BadQuery(f"from ({first}) is after to ({last}; the end is never later than today)")
        return DateRange(first, last, "custom")
    return preset_range(default, today)


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    url: str
    active: bool


def tabs(keys: Iterable[str], rng: DateRange, **keep: str | None) -> list[Tab]:
    """Range tabs that keep the page's other filters (queue, team, question)."""
    return [Tab(k, PRESETS[k], "?" + query_string(range=k, **keep), rng.key == k) for k in keys]


def range_today(settings: Settings, now: datetime | None = None) -> date:
    return local_today(settings.tz, now)


# -- figures as the page prints them -------------------------------------------------------------------

Point = Estimate | ReportRow | None  # one value of a trend: a tally's estimate, a report row, or a gap


@dataclass(frozen=True)
class Shown:
    """One figure: its text, its 95 % interval, n, and whether it is greyed as insufficient data."""

    text: str
    interval: str | None
    n: int | None
    insufficient: bool
    band: str | None = None

    @property
    def empty(self) -> bool:
        return self.interval is None and not self.insufficient

    @property
    def cell(self) -> str:
        """For secondary table columns: the row already says "insufficient data" in its CSAT cell."""
        return "—" if self.insufficient else self.text


def shown(
    value: float | None,
    low: float | None,
    high: float | None,
    n: int | None,
    kind: str,
    *,
    insufficient: bool | None = None,
    band: str | None = None,
) -> Shown:
    """``kind``: pct (0–100), nps (−100…+100) or mean. ``insufficient`` defaults to "answers but no value"."""
    if value is None:
        short = bool(n) if insufficient is None else insufficient
        return Shown("insufficient data" if short else "—", None, n, short)
    fmt = FORMATS[kind]
    sep, unit = (" to ", "") if kind == "nps" else ("–", " %" if kind == "pct" else "")
    interval = None if low is None or high is None else fmt(low) + sep + fmt(high) + unit
    return Shown(fmt(value) + (" %" if kind == "pct" else ""), interval, n, False, band)


def _signed(value: float) -> str:
    """NPS as people write it: +38, 0, −24 (a real minus sign)."""
    return "0" if round(value) == 0 else f"{value:+.0f}".replace("-", "\u2212")


FORMATS: dict[str, Callable[[float], str]] = {
    "pct": lambda x: f"{x:.1f}",
    "nps": _signed,
    "mean": lambda x: f"{x:.2f}",
}


def shown_estimate(e: Estimate, kind: str, band: str | None = None) -> Shown:
    return shown(e.value, e.low, e.high, e.n, kind, band=band)


@dataclass(frozen=True)
class Bar:
    """CSAT % and its interval on a 0–100 track, as CSS percentages (``.bar .fill/.ci/.target``)."""

    fill: float
    ci_left: float
    ci_width: float
    target: float | None
    band: str | None


def _clamp(x: float) -> float:
    return round(max(0.0, min(100.0, x)), 2)


def bar_for(
    value: float | None, low: float | None, high: float | None, target: float | None, band: str | None
) -> Bar | None:
    if value is None:
        return None
    lo, hi = _clamp(low if low is not None else value), _clamp(high if high is not None else value)
    return Bar(_clamp(value), lo, round(hi - lo, 2), None if target is None else _clamp(target), band)


@dataclass(frozen=True)
class RowView:
    """A report row ready for a table line: the link, the bar and every figure with its interval."""

    row: ReportRow
    name: str
    link: str | None
    team: str | None
    csat: Shown
    bar: Bar | None
    mean: Shown
    nps: Shown
    fcr: Shown
    reach: Shown

    @property
    def insufficient(self) -> bool:
        return self.row.flag in ("insufficient_data", "no_answers")


def row_view(
    row: ReportRow, *, name: str | None = None, link: str | None = None, team: str | None = None
) -> RowView:
    short = row.flag == "insufficient_data"
    return RowView(
        row=row,
        name=name or row.group,
        link=link,
        team=team,
        csat=shown(row.csat_pct, row.csat_pct_low, row.csat_pct_high, row.responses, "pct", band=row.band),
        bar=bar_for(row.csat_pct, row.csat_pct_low, row.csat_pct_high, row.target_pct, row.band),
        mean=shown(row.csat_mean, row.csat_mean_low, row.csat_mean_high, row.responses, "mean"),
        nps=shown(row.nps, row.nps_low, row.nps_high, row.nps_responses, "nps"),
        fcr=shown(row.fcr_pct, row.fcr_pct_low, row.fcr_pct_high, None, "pct", insufficient=short),
        reach=shown(row.reach_pct, None, None, row.offered, "pct"),
    )


# -- links -------------------------------------------------------------------------------------------


def query_string(**values: Any) -> str:
    """Only the values that are set, URL-encoded: names from the database go into links safely."""
    return urlencode({k: v for k, v in values.items() if v not in (None, "")})


def range_params(rng: DateRange) -> dict[str, str]:
    if rng.key == "custom":
        return {"from": rng.first.isoformat(), "to": rng.last.isoformat()}
    return {"range": rng.key}


def agent_link(name: str) -> str:
    return "/agents/" + quote(name, safe="")


def queue_link(name: str) -> str:
    return "/queues/" + quote(name, safe="")


def team_link(name: str) -> str:
    return "/teams/" + quote(name, safe="")


def export_links(
    by: ReportBy,
    rng: DateRange,
    *,
    queue: str | None = None,
    question: str | None = None,
    team: str | None = None,
    period: ReportPeriod | None = None,
) -> list[tuple[str, str]]:
    """The table's export buttons: the CLI's files for the same query, with the page's dates fixed."""
    qs = query_string(
        by=by,
        **{"from": rng.first.isoformat(), "to": rng.last.isoformat()},
        queue=queue,
        question=question,
        team=team,
        period=period,
    )
    return [(fmt.upper(), f"/export/report.{fmt}?{qs}") for fmt in ("csv", "xlsx", "pdf")]


def file_name(*parts: str | None) -> str:
    """A download name safe in a Content-Disposition header, whatever an agent or queue is called."""
    words = ["".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in p) for p in parts if p]
    return "-".join(w.strip("_") or "_" for w in words)


# -- tallies for summaries ----------------------------------------------------------------------------


def fresh_rollups(engine: Engine, settings: Settings, now: datetime | None = None) -> date | None:
    """Refresh once per page (as ``build_report`` does) and say up to which day the rollups reach."""
    rollups.refresh(engine, settings.tz, now=now or datetime.now(UTC))
    return rollups.rolled_through(engine, settings.tz)


def tallies_for(
    engine: Engine,
    settings: Settings,
    query: ReportQuery,
    *,
    rolled_through: date | None,
    agents: Collection[str] | None = None,
    team_of: Mapping[str, str] | None = None,
) -> dict[GroupKey, Tally]:
    """``load_tallies``, limited to ``agents`` when given (None = everyone).

    ReportQuery filters one agent at a time, so a supervisor's scope is read agent by agent and summed;
    a team is a few dozen agents, and each read is two grouped queries on the rollups.
    """
    tz = settings.tz
    if agents is None:
        return load_tallies(engine, tz, query, rolled_through=rolled_through, team_of=team_of)
    out: dict[GroupKey, Tally] = {}
    for agent in sorted(agents):
        part = load_tallies(
            engine, tz, replace(query, agent=agent), rolled_through=rolled_through, team_of=team_of
        )
        for key, tally in part.items():
            out.setdefault(key, Tally()).add(tally)
    return out


def daily_query(by: ReportBy, rng: DateRange, *, queue: str | None = None) -> ReportQuery:
    return ReportQuery(by=by, date_from=rng.first, date_to=rng.last, period="day", queue=queue)


def by_group(tallies: Mapping[GroupKey, Tally]) -> dict[str, Tally]:
    out: dict[str, Tally] = {}
    for (group, _), tally in tallies.items():
        out.setdefault(group, Tally()).add(tally)
    return out


def by_day(tallies: Mapping[GroupKey, Tally]) -> dict[date, Tally]:
    out: dict[date, Tally] = {}
    for (_, day), tally in tallies.items():
        if day is not None:
            out.setdefault(day, Tally()).add(tally)
    return out


def ranked_rows(
    tallies: Mapping[str, Tally], by: ReportBy, rng: DateRange, settings: Settings
) -> list[ReportRow]:
    """Rows for groups summed here (a supervisor's queues), ranked exactly as a report ranks them."""
    query = ReportQuery(by=by, date_from=rng.first, date_to=rng.last)
    rows, _ = rows_from_tallies({(g, None): t for g, t in tallies.items()}, query, settings)
    return rows


# -- summary: cards, funnel, trend ---------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    label: str
    figure: Shown
    note: str | None = None


@dataclass(frozen=True)
class FunnelStep:
    label: str
    count: int
    width: float  # % of handled, for the bar


@dataclass(frozen=True)
class Summary:
    cards: list[Card]
    funnel: list[FunnelStep]
    partial: int
    no_input: int
    reach: Shown
    trend: dict[str, Any]
    responses: int


def cards_for(f: GroupFigures) -> list[Card]:
    easy = f.ces_easy_pct.value
    easy_note = None if easy is None else f"{easy:.0f} % easy (5–7)"
    return [
        Card("CSAT % (rated 4–5)", shown_estimate(f.csat_pct, "pct")),
        Card("NPS (−100 … +100)", shown_estimate(f.nps, "nps")),
        Card("CES (mean, 1–7)", shown_estimate(f.ces_mean, "mean"), easy_note),
        Card("FCR % (solved first time)", shown_estimate(f.fcr_pct, "pct")),
    ]


def funnel_for(f: GroupFigures) -> list[FunnelStep]:
    fn = f.funnel
    top = max(fn.handled, 1)
    steps = [
        ("Handled", fn.handled),
        ("Eligible", fn.eligible),
        ("Offered", fn.offered),
        ("Started", fn.started),
        ("Completed", fn.completed),
    ]
    return [FunnelStep(label, n, round(100.0 * n / top, 1)) for label, n in steps]


def summarise(
    per_day: Mapping[date, Tally], rng: DateRange, settings: Settings, target: float | None
) -> Summary:
    s = settings.scoring
    total = Tally()
    for tally in per_day.values():
        total.add(tally)
    f = figures_for(total, s.min_responses, s.confidence)
    points: list[Point] = [
        figures_for(per_day[d], s.min_responses, s.confidence).csat_pct if d in per_day else None
        for d in rng.days
    ]
    return Summary(
        cards=cards_for(f),
        funnel=funnel_for(f),
        partial=f.funnel.partial,
        no_input=f.funnel.no_input,
        reach=shown_estimate(f.reach_pct, "pct"),
        trend=trend_chart([day_label(d) for d in rng.days], [("CSAT %", points, True)], target),
        responses=f.responses,
    )


# -- charts (embedded as JSON, drawn by static/charts.js) ---------------------------------------------


def _triple(p: Point) -> tuple[float | None, float | None, float | None, int]:
    if p is None:
        return None, None, None, 0
    if isinstance(p, ReportRow):
        return p.csat_pct, p.csat_pct_low, p.csat_pct_high, p.responses
    return p.value, p.low, p.high, p.n


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def trend_chart(
    labels: list[str], series: Iterable[tuple[str, list[Point], bool]], target: float | None
) -> dict[str, Any]:
    """CSAT % per period; ``main`` series carry their interval band, comparison series are a line."""
    out = []
    for name, points, main in series:
        values = [_triple(p) for p in points]
        entry: dict[str, Any] = {
            "label": name,
            "main": main,
            "value": [_r(v[0]) for v in values],
            "n": [v[3] for v in values],
        }
        if main:
            entry["low"] = [_r(v[1]) for v in values]
            entry["high"] = [_r(v[2]) for v in values]
        out.append(entry)
    return {
        "kind": "trend",
        "labels": labels,
        "series": out,
        "target": target,
        "min_responses_note": "too few answers for a figure",
    }


def distribution_chart(counts: Mapping[int, int]) -> dict[str, Any]:
    return {
        "kind": "distribution",
        "labels": [f"{v} {CSAT_WORDS[v]}" for v in range(1, 6)],
        "counts": [int(counts.get(v, 0)) for v in range(1, 6)],
        "colours": [DIST_COLOURS[v] for v in range(1, 6)],
    }


def week_label(start: date) -> str:
    """The period label a weekly report row carries (2026-W48), to match rows to chart weeks."""
    return period_label(start, "week")


def day_label(day: date) -> str:
    return f"{day.day} {day:%b}"


# -- the agent page ------------------------------------------------------------------------------------


def weekly_trend(data: AgentReportData) -> dict[str, Any]:
    """The agent per week with its interval band, the team as a dashed line; silent weeks are gaps."""
    weeks = data.week_starts
    mine = {r.period: r for r in data.weekly}
    points: list[Point] = [mine.get(week_label(w)) for w in weeks]
    series: list[tuple[str, list[Point], bool]] = [(data.agent, points, True)]
    if data.team:
        team = {r.period: r for r in data.team_weekly}
        series.append((f"team {data.team}", [team.get(week_label(w)) for w in weeks], False))
    return trend_chart([day_label(w) for w in weeks], series, data.target_pct)


def comparisons(data: AgentReportData, *, links: bool) -> list[tuple[str, RowView | None, str | None]]:
    """The agent beside their team, each queue they served (all agents) and everyone; links only for
    viewers who may open those pages (not agents)."""
    out: list[tuple[str, ReportRow | None, str | None]] = [(data.agent, data.row, agent_link(data.agent))]
    if data.team:
        out.append((f"Team {data.team}", data.team_row, team_link(data.team)))
    out += [(f"Queue {r.group} (all agents)", r, queue_link(r.group)) for r in data.queue_rows]
    out.append(("Everyone", data.everyone, None))
    return [(label, row_view(r) if r else None, link if links else None) for label, r, link in out]


# -- scoping reports to a viewer ----------------------------------------------------------------------

Keep = Callable[[str], bool]


def report_for(
    engine: Engine,
    settings: Settings,
    query: ReportQuery,
    *,
    keep_agent: Keep | None = None,
    keep_team: Keep | None = None,
    now: datetime | None = None,
    refresh: bool = True,
) -> Report:
    """``build_report``, or, when agent or team rows are limited, the same report over the kept rows only.

    Limited reports are ranked and totalled among the kept rows: a centre-wide total or rank next to
    a supervisor's two agents would let them work out the figures of the agents they may not see.
    Queue and question reports are centre-wide for everyone who may see reports.
    """
    keep = keep_agent if query.by == "agent" else keep_team if query.by == "team" else None
    if keep is None:
        return build_report(engine, settings, query, now=now, refresh=refresh)
    now = now or datetime.now(UTC)
    rolled = fresh_rollups(engine, settings, now) if refresh else rollups.rolled_through(engine, settings.tz)
    team_of = team_map(engine, settings) if query.by == "team" else None
    tallies = load_tallies(engine, settings.tz, query, rolled_through=rolled, team_of=team_of)
    kept = {key: tally for key, tally in tallies.items() if keep(key[0])}
    rows, totals = rows_from_tallies(kept, query, settings)
    return Report(query, rows, totals, settings.timezone, settings.scoring.min_responses, now)


# -- the calls behind an agent's number ---------------------------------------------------------------


@dataclass(frozen=True)
class CallLine:
    uniqueid: str
    when: datetime  # aware, local
    queue: str | None
    talk: str
    csat: int | None
    answers: list[tuple[str, str]]
    comments: list[int]  # answer ids with a voice comment, for /recordings/{id}


@dataclass(frozen=True)
class CallPage:
    calls: list[CallLine]
    total: int
    page: int
    pages: int


def _talk(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds // 60}:{seconds % 60:02d}"


def answer_text(question_type: str, value: int | None, recording: str | None) -> str:
    if question_type == "comment":
        return "voice comment" if recording else "no comment"
    if value is None:
        return "—"
    if question_type == "yesno":
        return "yes" if value == 1 else "no"
    return str(value)


def agent_calls(
    engine: Engine,
    settings: Settings,
    agent: str,
    first: date,
    last: date,
    page: int = 1,
    per_page: int = CALLS_PER_PAGE,
) -> CallPage:
    """Every surveyed call of the agent in the range (local days), lowest CSAT first, then most recent."""
    tz = settings.tz
    start, end = local_day_bounds(first, tz)[0], local_day_bounds(last, tz)[1]
    csat = func.min(case((Answer.question_type == "csat", Answer.value), else_=None)).label("csat")
    at = func.min(Answer.answered_at).label("at")
    grouped = (
        select(Answer.call_uniqueid, csat, at)
        .where(
            Answer.agent == agent,
            Answer.answered_at >= start,  # type: ignore[operator]
            Answer.answered_at < end,  # type: ignore[operator]
        )
        .group_by(Answer.call_uniqueid)
        .subquery()
    )
    with engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(grouped)).scalar_one())
        pages = max(1, -(-total // per_page))
        page = max(1, min(page, pages))
        picked = conn.execute(
            select(grouped)
            .order_by(grouped.c.csat.is_(None), grouped.c.csat, desc(grouped.c.at), grouped.c.call_uniqueid)
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
        calls, answers = calls_with_answers(conn, [p.call_uniqueid for p in picked])
    lines = []
    for p in picked:
        call, mine = calls.get(p.call_uniqueid), answers.get(p.call_uniqueid, [])
        moment = (call.connected_at if call and call.connected_at else None) or p.at
        lines.append(
            CallLine(
                uniqueid=p.call_uniqueid,
                when=moment.replace(tzinfo=UTC).astimezone(tz),
                queue=(call.queue if call else None) or next((a.queue for a in mine if a.queue), None),
                talk=_talk(call.talk_seconds if call else None),
                csat=None if p.csat is None else int(p.csat),
                answers=[(a.question, answer_text(a.question_type, a.value, a.recording)) for a in mine],
                comments=[a.id for a in mine if a.recording],
            )
        )
    return CallPage(lines, total, page, pages)


# -- the settings page --------------------------------------------------------------------------------

SECRET_KEYS = {"hash_secret", "ami.secret", "web.secret_key", "smtp.password"}
SECRET_WORDS = ("secret", "password", "passwd", "token")  # and any future setting named like one
REDACTED = "•••••• (hidden)"


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    elif isinstance(value, list):
        out.append((prefix, ", ".join(str(v) for v in value)))
    else:
        out.append((prefix, "" if value is None else str(value)))


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show nothing of it rather than a password
        return REDACTED


def _site_only(url: str) -> str:
    """Webhook URLs often carry their token in the path (Slack, Teams): show where, not the token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/… (path hidden)" if parts.scheme else REDACTED


def redacted_settings(settings: Settings) -> list[tuple[str, str]]:
    """Every setting as dotted name and value, secrets replaced: an admin can check a deployment without
    the page becoming a way to read the session key or the AMI password."""
    data = settings.model_dump(mode="json")
    out: list[tuple[str, str]] = []
    _flatten("", data, out)
    shown_rows = []
    for name, value in out:
        last = name.rsplit(".", 1)[-1]
        if name in SECRET_KEYS or any(word in last for word in SECRET_WORDS):
            value = REDACTED if value else ""
        elif name == "database_url" and value:
            value = _hide_password(value)
        elif name == "alerts.webhook_url" and value:
            value = _site_only(value)
        shown_rows.append((name, value))
    shown_rows.insert(2, ("database (in use)", _hide_password(settings.resolved_database_url)))
    return shown_rows


# -- what exists --------------------------------------------------------------------------------------


def known_queues(engine: Engine, settings: Settings) -> list[str]:
    """Queues with calls or answers, and those configured (a new queue has a page before its first call)."""
    with engine.connect() as conn:
        names = set(conn.execute(select(Call.queue).distinct()).scalars())
        names |= set(conn.execute(select(Answer.queue).distinct()).scalars())
    names |= set(settings.queues)
    names.discard(None)  # type: ignore[arg-type]
    return sorted(n for n in names if n)


def rating_questions(settings: Settings) -> list[str]:
    """Question keys that carry a CSAT rating: what the leaderboard's question filter can pick."""
    return sorted({q.key for s in settings.surveys.values() for q in s.questions if q.type == "csat"})


def recording_file(root: Path, stored: str) -> Path | None:
    """The WAV for a stored recording path, only if it really lies inside ``root`` (symlinks resolved):
    a row edited to ``../../etc/passwd`` or an absolute path elsewhere gets nothing."""
    base = root.resolve()
    path = (base / stored).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path
