"""The PDF report: a chart a supervisor takes in at a glance, then every figure in a table.

A4 landscape. The first page has the title, the range and time zone and a chart of CSAT % per group
with its 95 % interval (bars coloured by band, the target as a dashed line); a report per period charts
CSAT % over the periods instead. The table follows, its header repeated on every page. A group with too
few answers says "insufficient data" in words: on paper an empty cell reads as "someone forgot".

This module also holds the PDF building blocks the agent training report (``scoring.agent_report``)
shares: the fonts (DejaVu from matplotlib's own data, so accented names and "–" print on any machine
without system fonts), figure-to-PNG and the way numbers are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.fonts import FontFace
from fpdf.table import Table
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from scoring.report import Report, ReportRow

FONT = "DejaVu"
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}

#: Band colours: table cell fill, and bar / line colour in charts.
BAND_FILL = {"good": (198, 239, 206), "fair": (255, 235, 156), "poor": (255, 199, 206)}
BAND_BAR = {"good": "#2E7D32", "fair": "#C9A227", "poor": "#C62828"}
NO_BAND_BAR = "#4A78A8"
HEADER_FILL = (221, 227, 234)
TOTAL_FILL = (242, 242, 242)
GROUP_WORD = {"agent": "agent", "queue": "queue", "team": "team", "question": "question"}

BARS_PER_CHART = 22  # more bars than this would not leave a readable line each on a landscape page
MAX_LINES = 8  # lines in a per-period chart


# -- building blocks (shared with scoring.agent_report) -----------------------------------------------


class ReportPdf(FPDF):
    """A4 with the DejaVu fonts and a footer naming the document and the page."""

    def __init__(self, footer_text: str, *, landscape: bool = True, created: datetime | None = None) -> None:
        super().__init__(orientation="L" if landscape else "P", unit="mm", format="A4")
        for style, name in FONT_FILES.items():
            self.add_font(FONT, style, FONT_DIR / name)
        self.footer_text = footer_text
        self.set_margins(10, 10, 10)
        self.set_auto_page_break(True, margin=14)
        self.set_font(FONT, size=9)
        self.set_creator("csat")
        if created is not None:  # the same report gives the same bytes
            self.set_creation_date(created if created.tzinfo else created.replace(tzinfo=UTC))

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font(FONT, size=7)
        self.set_text_color(110)
        self.cell(0, 5, self.footer_text, align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0)

    @property
    def usable_width(self) -> float:
        return self.w - self.l_margin - self.r_margin

    @property
    def space_left(self) -> float:
        return self.h - self.b_margin - self.get_y()

    def heading(self, text: str, size: float = 16) -> None:
        self.set_font(FONT, "B", size)
        self.multi_cell(0, size * 0.45, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.set_font(FONT, size=9)

    def paragraph(self, text: str, size: float = 9, *, style: str = "", colour: int = 0) -> None:
        self.set_font(FONT, style, size)
        self.set_text_color(colour)
        self.multi_cell(0, size * 0.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0)
        self.set_font(FONT, size=9)

    def figure(self, fig: Figure, width_mm: float, height_mm: float, *, x: float | None = None) -> None:
        """Place a figure at the cursor (a new page first if it does not fit), 1:1 so fonts keep size."""
        if self.space_left < height_mm:
            self.add_page()
        y = self.get_y()
        self.image(image_of(fig), x=x if x is not None else self.l_margin, y=y, w=width_mm, h=height_mm)
        self.set_y(y + height_mm)


def new_figure(width_mm: float, height_mm: float) -> Figure:
    """A figure sized in mm as it will sit on the page (fonts in points stay true to size)."""
    fig = Figure(figsize=(width_mm / 25.4, height_mm / 25.4), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def image_of(fig: Figure, dpi: int = 150) -> Image.Image:
    """The rendered figure as an image fpdf2 embeds directly (a PNG round trip costs more than drawing)."""
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")


def num(value: float | None, digits: int = 1, *, sign: bool = False, missing: str = "—") -> str:
    if value is None:
        return missing
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def span(low: float | None, high: float | None, digits: int = 1) -> str:
    if low is None or high is None:
        return ""
    return f"{low:.{digits}f}–{high:.{digits}f}"


def utc_text(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def flag_text(row: ReportRow, min_responses: int) -> str:
    if row.flag == "insufficient_data":
        return f"insufficient data ({row.responses} of {min_responses})"
    if row.flag == "no_answers":
        return "no 1–5 ratings" if row.responses else "no answers"
    if row.flag == "below_target":
        return f"below target ({row.target_pct:g} %)" if row.target_pct is not None else "below target"
    return row.flag or ""


def style_axes(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)


# -- the report -----------------------------------------------------------------------------------------


def render_pdf(report: Report) -> bytes:
    q = report.query
    pdf = ReportPdf(f"csat · {report.title}", landscape=True, created=report.generated_at)
    pdf.add_page()
    pdf.heading(report.title)
    pdf.paragraph(
        f"Local days in {report.timezone} · generated {utc_text(report.generated_at)} · "
        f"a figure needs at least {report.min_responses} answers",
        colour=90,
    )
    pdf.ln(2)
    if not report.rows:
        pdf.paragraph("No answers in this range.", 12)
    elif q.period:
        _period_chart(pdf, report)
    else:
        _bar_charts(pdf, report)
    interval = "Grey band" if q.period else "Lines"
    pdf.paragraph(
        f"CSAT % = share of callers who rated 4 or 5 on the 1–5 scale. {interval}: the 95 % interval"
        " (Wilson), the range the true figure most likely lies in. Rank: by the interval's low end, so a"
        " few lucky calls never outrank many good ones.",
        7,
        colour=90,
    )
    pdf.ln(3)
    _table(pdf, report)
    return bytes(pdf.output())


def _bar_charts(pdf: ReportPdf, report: Report) -> None:
    """Bars in chunks that fit a page. Questions without 1–5 ratings (yes/no, NPS…) have no CSAT bar."""
    rows = [r for r in report.rows if r.csat_pct is not None or not (r.flag == "no_answers" and r.responses)]
    for start in range(0, len(rows), BARS_PER_CHART):
        chunk = rows[start : start + BARS_PER_CHART]
        height = min(24 + 6.5 * len(chunk), pdf.h - pdf.t_margin - pdf.b_margin - 12)
        pdf.figure(_bar_figure(chunk, pdf.usable_width, height), pdf.usable_width, height)


def _bar_figure(rows: Sequence[ReportRow], width: float, height: float) -> Figure:
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    ys = list(range(len(rows)))
    rated = [(y, r) for y, r in zip(ys, rows, strict=True) if r.csat_pct is not None]
    for y, row in zip(ys, rows, strict=True):
        if row.csat_pct is None:
            why = "no answers" if row.flag == "no_answers" else f"insufficient data ({row.responses} answers)"
            ax.text(1, y, why, va="center", fontsize=8, color="#777777", style="italic")
    if rated:  # one call per artist kind: per-bar calls make a long report slow to draw
        y_at = [y for y, _ in rated]
        value = [r.csat_pct or 0.0 for _, r in rated]
        low = [v - _or(r.csat_pct_low, v) for v, (_, r) in zip(value, rated, strict=True)]
        high = [_or(r.csat_pct_high, v) - v for v, (_, r) in zip(value, rated, strict=True)]
        colours = [BAND_BAR.get(r.band or "", NO_BAND_BAR) for _, r in rated]
        ax.barh(y_at, value, height=0.62, color=colours, alpha=0.85)
        ax.errorbar(value, y_at, xerr=[low, high], fmt="none", ecolor="#222222", elinewidth=1.1, capsize=3)
        for y, v, up in zip(y_at, value, high, strict=True):
            if v >= 12:  # inside the bar, clear of the interval line and the target line
                ax.text(1, y, f"{v:.1f}", va="center", fontsize=8, color="white", weight="bold")
            else:
                ax.text(v + up + 1.2, y, f"{v:.1f}", va="center", fontsize=8)
    _target_marks(ax, rows, ys)
    ax.set_yticks(ys, [_label(r) for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # rank 1 on top
    ax.set_xlim(0, 105)
    ax.set_xticks(range(0, 101, 10))
    ax.set_xlabel("CSAT % (bar) with its 95 % interval (line)", fontsize=8)
    ax.grid(axis="x", color="#DDDDDD", linewidth=0.6)
    ax.set_axisbelow(True)
    style_axes(ax)
    return fig


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _label(row: ReportRow) -> str:
    rank = f"{row.rank}. " if row.rank is not None else ""
    name = row.group if len(row.group) <= 32 else row.group[:31] + "…"
    return f"{rank}{name}"


def _target_marks(ax: Axes, rows: Sequence[ReportRow], ys: Sequence[int]) -> None:
    """One dashed line when every group has the same target (the usual case), else a tick per bar."""
    targets = {r.target_pct for r in rows if r.target_pct is not None}
    if len(targets) == 1:
        t = targets.pop()
        ax.axvline(t, color="#555555", linestyle="--", linewidth=1)
        ax.annotate(
            f"target {t:g} %",
            (t, 0),
            xycoords=("data", "axes fraction"),
            xytext=(3, 2),
            textcoords="offset points",
            fontsize=7,
            color="#555555",
        )
    elif targets:
        label = "target"
        for y, r in zip(ys, rows, strict=True):
            if r.target_pct is not None:
                ax.plot([r.target_pct] * 2, [y - 0.4, y + 0.4], color="#555555", ls="--", lw=1, label=label)
                label = "_"  # one legend entry for all the ticks
        ax.legend(fontsize=7, loc="lower right", frameon=False)


def _period_chart(pdf: ReportPdf, report: Report) -> None:
    """CSAT % per period: the groups with most answers as lines, everyone as a line with its band."""
    periods = sorted({r.period for r in [*report.rows, *report.totals] if r.period})
    weight: dict[str, int] = {}
    for r in report.rows:
        weight[r.group] = weight.get(r.group, 0) + r.responses
    value = {(r.period, r.group): r.csat_pct for r in report.rows if r.csat_pct is not None}
    charted = {g for _, g in value}  # a group with no figure in any period would be a legend entry only
    groups = sorted(charted, key=lambda g: (-weight[g], g))[:MAX_LINES]
    totals = {r.period: r for r in report.totals}

    height = 110.0
    fig = new_figure(pdf.usable_width, height)
    ax = fig.add_subplot()
    xs = list(range(len(periods)))
    every = [totals.get(p) for p in periods]
    low = [t.csat_pct_low if t and t.csat_pct_low is not None else float("nan") for t in every]
    high = [t.csat_pct_high if t and t.csat_pct_high is not None else float("nan") for t in every]
    ax.fill_between(xs, low, high, color="#999999", alpha=0.25, linewidth=0, label="everyone: 95 % interval")
    mid = [t.csat_pct if t and t.csat_pct is not None else float("nan") for t in every]
    word = GROUP_WORD.get(report.query.by, "group")
    ax.plot(xs, mid, color="#222222", linewidth=2.6, marker="s", markersize=4, label=f"all {word}s")
    for g in groups:
        ys = [value.get((p, g)) for p in periods]
        ax.plot(xs, [v if v is not None else float("nan") for v in ys], marker="o", markersize=3.5, label=g)
    targets = {t.target_pct for t in every if t and t.target_pct is not None}
    if len(targets) == 1:
        t = targets.pop()
        ax.axhline(t, color="#555555", linestyle="--", linewidth=1, label=f"target {t:g} %")
    ax.set_xticks(xs, periods, fontsize=8, rotation=30 if len(periods) > 8 else 0)
    ax.set_ylim(0, 100)
    ax.set_ylabel("CSAT %", fontsize=8)
    ax.grid(axis="y", color="#DDDDDD", linewidth=0.6)
    limited = f" ({len(groups)} {word}s with most answers)" if len(charted) > len(groups) else ""
    ax.set_title(f"CSAT % per {report.query.period}{limited}", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    style_axes(ax)
    pdf.figure(fig, pdf.usable_width, height)


def _table(pdf: ReportPdf, report: Report) -> None:
    q = report.query
    word = GROUP_WORD.get(q.by, "group")
    funnel = q.by != "question"
    headers = [word.title(), "Rank", "Answers", "CSAT % [95 % interval]", "Mean (1–5)", "NPS", "FCR %"]
    widths = [62.0, 13, 18, 48, 20, 17, 17]
    if funnel:
        headers.append("Reach %")
        widths.append(17)
    headers.append("Flag")
    widths.append(pdf.usable_width - sum(widths) - (22 if q.period else 0))
    if q.period:
        headers.insert(0, q.period.title())
        widths.insert(0, 22)
    if pdf.space_left < 40:
        pdf.add_page()
    pdf.set_font(FONT, size=8)
    with pdf.table(
        col_widths=widths,
        width=pdf.usable_width,
        text_align=[
            "LEFT" if h in (word.title(), "Flag", "Day", "Week", "Month") else "RIGHT" for h in headers
        ],
        headings_style=FontFace(emphasis="B", fill_color=HEADER_FILL),
        borders_layout="HORIZONTAL_LINES",
        line_height=5.2,
        repeat_headings=1,
        padding=(0.6, 1.2),
    ) as table:
        table.row(headers)
        for r in report.rows:
            _table_row(table, r, report, funnel, q.period is not None, None)
        for t in report.totals:
            _table_row(table, t, report, funnel, q.period is not None, f"All {word}s")
    pdf.set_font(FONT, size=9)


def _table_row(
    table: Table,
    r: ReportRow,
    report: Report,
    funnel: bool,
    periodic: bool,
    total_label: str | None,
) -> None:
    base = FontFace(emphasis="B", fill_color=TOTAL_FILL) if total_label else None
    row = table.row()
    if periodic:
        row.cell(r.period or "", style=base)
    row.cell(total_label or r.group, style=base)
    row.cell(str(r.rank) if r.rank is not None else "", style=base)
    row.cell(str(r.responses), style=base)
    if r.csat_pct is None:
        csat = (
            "insufficient data" if r.flag == "insufficient_data" else "no answers" if not r.responses else "—"
        )
        row.cell(csat, style=base)
    else:
        fill = BAND_FILL.get(r.band or "")
        style = FontFace(
            emphasis="B" if total_label else None, fill_color=fill or (TOTAL_FILL if base else None)
        )
        row.cell(f"{r.csat_pct:.1f} [{span(r.csat_pct_low, r.csat_pct_high)}]", style=style)
    row.cell(num(r.csat_mean, 2), style=base)
    row.cell(num(r.nps, 1, sign=True), style=base)
    row.cell(num(r.fcr_pct), style=base)
    if funnel:
        row.cell(num(r.reach_pct), style=base)
    row.cell(flag_text(r, report.min_responses), style=base)
