"""The training report for one agent: a page a trainer can hand over, then the calls worth listening to.

``agent_report_data`` gathers everything from the same ``build_report`` the ranked reports use (so the
figures agree to the decimal with ``csat report``) plus the agent's lowest-rated calls;
``render_agent_report`` turns it into a portrait A4 PDF. ``summary`` writes the plain-language text and
is separate so the wording can be tested without a PDF.

The summary compares the agent with the team by *intervals*: "above" or "below the team" only when the
two 95 % intervals do not overlap. Anything else is "within the normal range", because a difference the
data cannot tell from chance is not something to coach on. The agent-facing page avoids statistical
words; "likely between" is explained in a footnote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from fpdf.fonts import FontFace
from matplotlib.figure import Figure
from sqlalchemy import Engine, desc, func, select

from ivr.models import Agent, Answer
from ivr.queries import calls_with_answers
from ivr.settings import Settings
from scoring.pdf_export import BAND_FILL, FONT, HEADER_FILL, ReportPdf, new_figure, style_axes
from scoring.periods import local_day_bounds, period_start
from scoring.report import ReportRow, build_report
from scoring.tallies import ReportQuery
from scoring.teams import team_map

LOWEST_CALLS = 10
LOWEST_VALUE = 3  # "lowest-rated" means not satisfied: 1–3 on the 1–5 scale
CSAT_WORDS = {1: "very dissatisfied", 2: "dissatisfied", 3: "neutral", 4: "satisfied", 5: "very satisfied"}
DIST_COLOURS = {1: "#C62828", 2: "#EF6C00", 3: "#9E9E9E", 4: "#7CB342", 5: "#2E7D32"}
NBSP = "\u00a0"  # keeps "71 %" on one line


@dataclass(frozen=True)
class Comparison:
    label: str
    row: ReportRow | None


@dataclass(frozen=True)
class LowCall:
    uniqueid: str
    when: datetime  # aware, in the report's time zone
    queue: str | None
    csat: int
    answers: list[tuple[str, str]]  # (question, answer as written) in survey order
    comment: Path | None  # the voice comment WAV, if the caller left one

    @property
    def comment_link(self) -> str | None:
        return self.comment.as_uri() if self.comment else None


@dataclass(frozen=True)
class AgentReportData:
    agent: str
    display_name: str | None
    date_from: date
    date_to: date
    timezone: str
    min_responses: int
    target_pct: float | None
    generated_at: datetime
    row: ReportRow | None  # the agent over the whole range; None without a single answer or call
    weekly: list[ReportRow]  # the agent per ISO week (weeks with no answers are absent)
    team: str | None
    team_row: ReportRow | None
    team_weekly: list[ReportRow]
    queue_rows: list[ReportRow]  # each queue the agent served, over all of its agents
    everyone: ReportRow | None
    lowest: list[LowCall] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.display_name or self.agent

    @property
    def distribution(self) -> dict[int, int]:
        counts = self.row.distribution if self.row else {}
        return {v: counts.get(v, 0) for v in range(1, 6)}

    @property
    def week_starts(self) -> list[date]:
        """Every week the range touches, Mondays, so that a silent week shows as a gap in the trend."""
        first, out = period_start(self.date_from, "week"), []
        while first <= self.date_to:
            out.append(first)
            first += timedelta(days=7)
        return out

    @property
    def comparisons(self) -> list[Comparison]:
        out = [Comparison("You", self.row)]
        if self.team:
            out.append(Comparison(f"Your team ({self.team})", self.team_row))
        out += [Comparison(f"Queue {r.group} (all agents)", r) for r in self.queue_rows]
        out.append(Comparison("Everyone", self.everyone))
        return out


# -- gathering ----------------------------------------------------------------------------------------


def agent_report_data(
    engine: Engine,
    settings: Settings,
    agent: str,
    date_from: date,
    date_to: date,
    *,
    now: datetime | None = None,
) -> AgentReportData:
    now = now or datetime.now(UTC)
    refreshed: list[bool] = []

    def rows(by: str, *, totals: bool = False, **kw: object) -> list[ReportRow]:
        query = ReportQuery(by=by, date_from=date_from, date_to=date_to, **kw)  # type: ignore[arg-type]
        report = build_report(engine, settings, query, now=now, refresh=not refreshed)
        refreshed.append(True)
        return report.totals if totals else report.rows

    mine = next((r for r in rows("agent", agent=agent) if r.group == agent), None)
    weekly = [r for r in rows("agent", agent=agent, period="week") if r.group == agent]
    team = team_map(engine, settings).get(agent)
    team_row, team_weekly = None, []
    if team:
        team_row = next((r for r in rows("team") if r.group == team), None)
        team_weekly = [r for r in rows("team", period="week") if r.group == team]
    served = {r.group for r in rows("queue", agent=agent)}
    queue_rows = [r for r in rows("queue") if r.group in served]
    everyone = next(iter(rows("queue", totals=True)), None)
    return AgentReportData(
        agent=agent,
        display_name=_display_name(engine, agent),
        date_from=date_from,
        date_to=date_to,
        timezone=settings.timezone,
        min_responses=settings.scoring.min_responses,
        target_pct=settings.target_for(None),
        generated_at=now,
        row=mine,
        weekly=weekly,
        team=team,
        team_row=team_row,
        team_weekly=team_weekly,
        queue_rows=queue_rows,
        everyone=everyone,
        lowest=lowest_rated_calls(engine, settings, agent, date_from, date_to),
    )


def _display_name(engine: Engine, agent: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(Agent.display_name).where(Agent.agent == agent)).scalar_one_or_none()


def lowest_rated_calls(
    engine: Engine, settings: Settings, agent: str, date_from: date, date_to: date, limit: int = LOWEST_CALLS
) -> list[LowCall]:
    """The agent's calls rated 1–3 in the range (local days), lowest first, then the most recent."""
    tz = settings.tz
    start, end = local_day_bounds(date_from, tz)[0], local_day_bounds(date_to, tz)[1]
    worst = func.min(Answer.value).label("worst")
    at = func.min(Answer.answered_at).label("at")
    stmt = (
        select(Answer.call_uniqueid, worst, at)
        .where(
            Answer.agent == agent,
            Answer.question_type == "csat",
            Answer.value >= 1,  # type: ignore[operator]
            Answer.value <= LOWEST_VALUE,  # type: ignore[operator]
            Answer.answered_at >= start,  # type: ignore[operator]
            Answer.answered_at < end,  # type: ignore[operator]
        )
        .group_by(Answer.call_uniqueid)
        .order_by(worst, desc(at), Answer.call_uniqueid)
        .limit(limit)
    )
    with engine.connect() as conn:
        picked = conn.execute(stmt).all()
        calls, by_call = calls_with_answers(conn, [p.call_uniqueid for p in picked])
    out = []
    for p in picked:
        call, answers = calls.get(p.call_uniqueid), by_call.get(p.call_uniqueid, [])
        moment = (call.connected_at if call and call.connected_at else None) or p.at
        recording = next((a.recording for a in answers if a.recording), None)
        out.append(
            LowCall(
                uniqueid=p.call_uniqueid,
                when=moment.replace(tzinfo=UTC).astimezone(tz),
                queue=(call.queue if call else None) or next((a.queue for a in answers if a.queue), None),
                csat=int(p.worst),
                answers=[(a.question, _answer_text(a.question_type, a.value, a.recording)) for a in answers],
                comment=_recording_path(recording, settings) if recording else None,
            )
        )
    return out


def _answer_text(question_type: str, value: int | None, recording: str | None) -> str:
    if question_type == "comment":
        return "voice comment" if recording else "no comment"
    if value is None:
        return "—"
    if question_type == "yesno":
        return "yes" if value == 1 else "no"
    return str(value)


def _recording_path(recording: str, settings: Settings) -> Path:
    path = Path(recording)
    return path if path.is_absolute() else settings.recordings_dir / path


# -- words --------------------------------------------------------------------------------------------


def range_words(first: date, last: date) -> str:
    """'Between 2 and 29 November 2026', 'On 2 November 2026', across months and years as needed."""
    if first == last:
        return f"On {first.day} {first:%B %Y}"
    if (first.year, first.month) == (last.year, last.month):
        return f"Between {first.day} and {last.day} {last:%B %Y}"
    if first.year == last.year:
        return f"Between {first.day} {first:%B} and {last.day} {last:%B %Y}"
    return f"Between {first.day} {first:%B %Y} and {last.day} {last:%B %Y}"


def pct_words(value: float) -> str:
    return f"{value:.0f}{NBSP}%"


def likely(row: ReportRow) -> str:
    return f"likely between {pct_words(row.csat_pct_low or 0)} and {pct_words(row.csat_pct_high or 0)}"


def compare(me: ReportRow, other: ReportRow) -> str:
    """'above', 'below' or 'within': above/below only when the intervals do not overlap."""
    if None in (me.csat_pct_low, me.csat_pct_high, other.csat_pct_low, other.csat_pct_high):
        return "within"
    if (me.csat_pct_low or 0) > (other.csat_pct_high or 0):
        return "above"
    if (me.csat_pct_high or 0) < (other.csat_pct_low or 0):
        return "below"
    return "within"


def _comparison_sentence(me: ReportRow, other: ReportRow, whom: str) -> str:
    verdict = compare(me, other)
    if verdict == "within":
        return f"This is within the normal range for {whom}."
    return f"This is {verdict} {whom}."


def summary(data: AgentReportData) -> list[str]:
    """The agent-facing paragraphs of page 1."""
    when = range_words(data.date_from, data.date_to)
    row = data.row
    n = row.responses if row else 0
    if n == 0:
        return [f"{when}, no caller rated you yet."]
    callers = "1 caller" if n == 1 else f"{n} callers"
    if row is None or row.csat_pct is None:
        return [
            f"{when}, {callers} rated you: not enough answers yet ({n} of {data.min_responses} needed)."
            " This report will show your score once enough callers have answered."
        ]
    dist = data.distribution
    satisfied = dist[4] + dist[5]
    first = (
        f"{when}, {callers} rated you. {satisfied} of them ({pct_words(row.csat_pct)}, {likely(row)})"
        " were satisfied or very satisfied."
    )
    if row.csat_mean is not None:
        first += f" On average they gave you {row.csat_mean:.1f} out of 5."
    out = [first]
    team, everyone = data.team_row, data.everyone
    if data.team and team is not None and team.csat_pct is not None:
        out.append(
            f"Your team ({data.team}): {pct_words(team.csat_pct)} ({likely(team)}). "
            + _comparison_sentence(row, team, "the team")
        )
    elif everyone is not None and everyone.csat_pct is not None:
        out.append(
            f"Everyone in the call centre: {pct_words(everyone.csat_pct)} ({likely(everyone)}). "
            + _comparison_sentence(row, everyone, "the call centre")
        )
    if data.target_pct is not None:
        out.append(f"The target is {data.target_pct:g}{NBSP}% satisfied callers.")
    return out


FOOTNOTE = (
    "“Likely between”: a few dozen answers cannot pin a score down exactly. If many more callers had"
    " answered, the score would almost certainly (19 times out of 20) lie in this range. The fewer the"
    " answers, the wider the range. Satisfied = 4 or 5 on the scale from 1 (very dissatisfied) to 5"
    " (very satisfied)."
)


# -- the PDF ------------------------------------------------------------------------------------------


def render_agent_report(data: AgentReportData) -> bytes:
    period = f"{data.date_from.isoformat()} to {data.date_to.isoformat()}"
    pdf = ReportPdf(f"csat · {data.name} · {period}", landscape=False, created=data.generated_at)
    pdf.add_page()
    pdf.heading(f"Your callers' feedback: {data.name}", 17)
    pdf.paragraph(
        f"{range_words(data.date_from, data.date_to)} · times in {data.timezone}"
        + (f" · agent {data.agent}" if data.display_name else ""),
        colour=90,
    )
    pdf.ln(3)
    for text in summary(data):
        pdf.paragraph(text, 11)
        pdf.ln(1.5)
    pdf.ln(2)
    _charts(pdf, data)
    pdf.ln(4)
    _comparison_table(pdf, data)
    pdf.ln(3)
    pdf.paragraph(FOOTNOTE, 7.5, colour=90)

    pdf.add_page()
    _lowest_calls(pdf, data)
    return bytes(pdf.output())


def _charts(pdf: ReportPdf, data: AgentReportData) -> None:
    height, gap = 78.0, 4.0
    trend_w = pdf.usable_width * 0.6
    dist_w = pdf.usable_width - trend_w - gap
    if pdf.space_left < height:
        pdf.add_page()
    y = pdf.get_y()
    pdf.figure(_trend_figure(data, trend_w, height), trend_w, height)
    pdf.set_y(y)
    pdf.figure(_distribution_figure(data, dist_w, height), dist_w, height, x=pdf.l_margin + trend_w + gap)


def _week_label(start: date) -> str:
    return f"{start.day} {start:%b}"


def _trend_figure(data: AgentReportData, width: float, height: float) -> Figure:
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    weeks = data.week_starts
    mine = {_week_of(r): r for r in data.weekly}
    team = {_week_of(r): r for r in data.team_weekly}
    xs = list(range(len(weeks)))

    def series(rows: dict[date | None, ReportRow], attr: str) -> list[float]:
        return [_nan(getattr(rows[w], attr)) if w in rows else math.nan for w in weeks]

    ax.fill_between(
        xs, series(mine, "csat_pct_low"), series(mine, "csat_pct_high"), color="#4A78A8", alpha=0.2, lw=0
    )
    ax.plot(xs, series(mine, "csat_pct"), color="#1F4E79", marker="o", markersize=4, lw=2, label="you")
    if team:
        ax.plot(xs, series(team, "csat_pct"), color="#888888", ls="--", lw=1.2, label="your team")
    if data.target_pct is not None:
        ax.axhline(data.target_pct, color="#555555", ls=":", lw=1, label="target")
    for x, w in zip(xs, weeks, strict=True):
        r = mine.get(w)
        if r is not None and r.csat_pct is None and r.responses:
            ax.annotate("too few\nanswers", (x, 4), ha="center", fontsize=6, color="#777777")
    if len(weeks) <= 8:
        labels = [f"{_week_label(w)}\n{mine[w].responses if w in mine else 0} answers" for w in weeks]
        ax.set_xticks(xs, labels, fontsize=7)
    else:  # a quarter or more: dates only, slanted, so that they do not run into each other
        ax.set_xticks(xs, [_week_label(w) for w in weeks], fontsize=6.5, rotation=60)
    ax.set_xlim(-0.5, len(weeks) - 0.5)
    ax.set_ylim(0, 100)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title("Satisfied callers per week (%)", fontsize=9)
    ax.set_xlabel("week starting", fontsize=7)
    ax.grid(axis="y", color="#DDDDDD", lw=0.6)
    fig.legend(fontsize=7, loc="outside lower center", frameon=False, ncols=3)
    style_axes(ax)
    return fig


def _week_of(row: ReportRow) -> date | None:
    if not row.period:
        return None
    year, week = row.period.split("-W")
    return date.fromisocalendar(int(year), int(week), 1)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _distribution_figure(data: AgentReportData, width: float, height: float) -> Figure:
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    dist = data.distribution
    values = list(range(1, 6))
    bars = ax.bar(values, [dist[v] for v in values], color=[DIST_COLOURS[v] for v in values], width=0.7)
    ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(values, [str(v) for v in values], fontsize=8)
    ax.set_xlabel("1 = very dissatisfied … 5 = very satisfied", fontsize=7)
    ax.set_title("How callers rated you", fontsize=9)
    top = max(dist.values(), default=0)
    ax.set_ylim(0, max(1, top) * 1.18)
    ax.yaxis.get_major_locator().set_params(integer=True)
    style_axes(ax)
    return fig


def _comparison_table(pdf: ReportPdf, data: AgentReportData) -> None:
    pdf.set_font(FONT, "B", 11)
    pdf.cell(0, 7, "How you compare", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=8.5)
    headers = ["", "Answers", "Satisfied", "Likely between", "Average (1–5)"]
    with pdf.table(
        col_widths=[70, 22, 30, 40, 28],
        text_align=["LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"],
        headings_style=FontFace(emphasis="B", fill_color=HEADER_FILL),
        borders_layout="HORIZONTAL_LINES",
        line_height=5.5,
        padding=(0.6, 1.2),
    ) as table:
        table.row(headers)
        for c in data.comparisons:
            r = c.row
            row = table.row()
            row.cell(c.label, style=FontFace(emphasis="B") if c.label == "You" else None)
            row.cell(str(r.responses) if r else "0")
            if r is None or r.csat_pct is None:
                n = r.responses if r else 0
                row.cell(f"not enough answers yet ({n} of {data.min_responses})", colspan=2, align="RIGHT")
            else:
                row.cell(f"{r.csat_pct:.1f} %", style=FontFace(fill_color=BAND_FILL.get(r.band or "")))
                row.cell(f"{r.csat_pct_low:.1f} – {r.csat_pct_high:.1f} %")
            row.cell(f"{r.csat_mean:.2f}" if r and r.csat_mean is not None else "—")
    pdf.set_font(FONT, size=9)


def _lowest_calls(pdf: ReportPdf, data: AgentReportData) -> None:
    pdf.heading("Lowest-rated calls", 14)
    if not data.lowest:
        pdf.paragraph(f"{range_words(data.date_from, data.date_to)}, no caller rated you below 4.", 11)
        return
    pdf.paragraph(
        f"Calls rated 1 to 3 ({len(data.lowest)}, at most {LOWEST_CALLS}), lowest first, then the most"
        f" recent. Times are local ({data.timezone}). “listen” opens the caller's voice comment.",
        9,
        colour=70,
    )
    pdf.ln(2)
    pdf.set_font(FONT, size=8)
    with pdf.table(
        col_widths=[30, 22, 30, 29, 53, 26],
        text_align=["LEFT", "LEFT", "LEFT", "LEFT", "LEFT", "LEFT"],
        headings_style=FontFace(emphasis="B", fill_color=HEADER_FILL),
        borders_layout="HORIZONTAL_LINES",
        line_height=5,
        padding=(0.8, 1.2),
        repeat_headings=1,
    ) as table:
        table.row(["When", "Queue", "Call", "Rating", "All answers", "Voice comment"])
        for call in data.lowest:
            row = table.row()
            row.cell(f"{call.when:%a %d %b %H:%M}")  # the year is in the heading's range
            row.cell(call.queue or "—")
            row.cell(call.uniqueid)
            colour = BAND_FILL["poor"] if call.csat <= 2 else BAND_FILL["fair"]
            row.cell(f"{call.csat} ({CSAT_WORDS[call.csat]})", style=FontFace(fill_color=colour))
            row.cell("; ".join(f"{q}: {v}" for q, v in call.answers))
            if call.comment_link:
                row.cell("listen", link=call.comment_link, style=FontFace(color=(31, 78, 121), emphasis="U"))
            else:
                row.cell("—")
    pdf.set_font(FONT, size=9)
    pdf.ln(3)
    paths = [c.comment for c in data.lowest if c.comment]
    if paths:
        pdf.paragraph("The voice comment files, for a viewer that does not follow links:", 7.5, colour=90)
        for p in paths:
            pdf.paragraph(str(p), 7, colour=90)
