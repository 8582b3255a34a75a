"""The Excel export: one sheet per grouping, real numbers a trainer can sort, filter and chart further.

Choices a reader of the file should know about:
- **Percentages are numbers 0–100 shown with one decimal** (71.4 means 71.4 %), exactly as in the CSV
  and JSON exports and the terminal table, so a figure copied between them never changes by a factor
  of 100. Headers say "%". NPS is −100 … +100 with a sign; means have two decimals.
- A figure that does not apply or rests on too few answers is an **empty cell**, never 0: a zero would
  be averaged and charted as if a caller had said it. The row's *Flag* column says why
  ("insufficient data", "no answers", "below target").
- The *CSAT %* and *Band* cells are coloured by band (good / fair / poor) with conditional formats tied
  to the Band column, so the colour stays right if someone re-sorts the rows.
- Totals (everyone together, per period) come after the groups, in bold.
- Each sheet has a chart: for a whole-range report, one horizontal bar per group with enough answers
  (CSAT %, whiskers = 95 % interval, bars coloured by band, rank 1 on top); for a report per day / week /
  month, CSAT % over the periods, one line per group (the groups with most answers, at most
  ``MAX_LINES``) and a thick line with whiskers for everyone, read from a small table under the totals.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import xlsxwriter
from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from scoring.report import Report, ReportRow

SHEET_NAMES = {"agent": "By agent", "queue": "By queue", "team": "By team", "question": "By question"}
GROUP_HEADERS = {"agent": "Agent", "queue": "Queue", "team": "Team", "question": "Question"}
FLAG_TEXT = {
    "insufficient_data": "insufficient data",
    "no_answers": "no answers",
    "below_target": "below target",
}
BAND_COLOURS = {  # (cell fill, cell font / bar colour)
    "good": ("#C6EFCE", "#2E7D32"),
    "fair": ("#FFEB9C", "#B7950B"),
    "poor": ("#FFC7CE", "#C62828"),
}
NUMBER_FORMATS = {"pct": "0.0", "mean": "0.00", "nps": "+0.0;-0.0;0.0", "int": "0", "text": "@"}
MAX_LINES = 12  # lines in a periodic chart; more is spaghetti

TITLE_ROW, NOTE_ROW, LEGEND_ROW, HEADER_ROW = 0, 1, 2, 4
FIRST_DATA_ROW = HEADER_ROW + 1


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str  # a key of NUMBER_FORMATS
    width: float
    value: Callable[[ReportRow], Any]
    funnel: bool = False  # dropped from question sheets: calls are not per question


def _field(name: str) -> Callable[[ReportRow], Any]:
    return lambda row: getattr(row, name)


def _flag(row: ReportRow) -> str | None:
    if row.flag == "no_answers" and row.responses:
        return "no 1–5 ratings"  # a yes/no or NPS question on a question sheet
    return FLAG_TEXT.get(row.flag, row.flag) if row.flag else None


COLUMNS: tuple[Column, ...] = (
    Column("rank", "Rank", "int", 6, _field("rank")),
    Column("responses", "Responses", "int", 10, _field("responses")),
    Column("csat_pct", "CSAT %", "pct", 8, _field("csat_pct")),
    Column("csat_pct_low", "CSAT % low", "pct", 10, _field("csat_pct_low")),
    Column("csat_pct_high", "CSAT % high", "pct", 10, _field("csat_pct_high")),
    Column("csat_mean", "CSAT mean (1–5)", "mean", 14, _field("csat_mean")),
    Column("nps", "NPS", "nps", 7, _field("nps")),
    Column("nps_low", "NPS low", "nps", 8, _field("nps_low")),
    Column("nps_high", "NPS high", "nps", 8, _field("nps_high")),
    Column("ces_mean", "CES mean (1–7)", "mean", 13, _field("ces_mean")),
    Column("ces_easy_pct", "CES easy %", "pct", 10, _field("ces_easy_pct")),
    Column("fcr_pct", "FCR %", "pct", 7, _field("fcr_pct")),
    Column("handled", "Handled", "int", 9, _field("handled"), funnel=True),
    Column("offered", "Offered", "int", 9, _field("offered"), funnel=True),
    Column("completed", "Completed", "int", 10, _field("completed"), funnel=True),
    Column("reach_pct", "Reach %", "pct", 8, _field("reach_pct"), funnel=True),
    Column("comments", "Comments", "int", 10, _field("comments")),
    Column("target_pct", "Target %", "pct", 9, _field("target_pct")),
    Column("band", "Band", "text", 7, _field("band")),
    Column("flag", "Flag", "text", 17, _flag),
)


def render_xlsx(reports: Sequence[Report]) -> bytes:
    """The workbook's bytes; sheets in the order given (the dispatcher puts the asked-for grouping first)."""
    buf = io.BytesIO()
    workbook = xlsxwriter.Workbook(buf, {"in_memory": True})
    workbook.set_properties({"title": reports[0].title if reports else "CSAT report", "author": "csat"})
    styles = _Styles(workbook)
    used: set[str] = set()
    for report in reports:
        name = _unique_sheet_name(SHEET_NAMES.get(report.query.by, f"By {report.query.by}"), used)
        _SheetWriter(workbook, workbook.add_worksheet(name), styles, report).write()
    if not reports:
        workbook.add_worksheet("Report").write(0, 0, "No report", styles.title)
    workbook.close()
    return buf.getvalue()


def _unique_sheet_name(name: str, used: set[str]) -> str:
    candidate, n = name[:31], 2
    while candidate.lower() in used:
        candidate = f"{name[:26]} ({n})"
        n += 1
    used.add(candidate.lower())
    return candidate


class _Styles:
    """Every cell format once per workbook (Excel caps the number of distinct formats)."""

    def __init__(self, wb: Workbook) -> None:
        self.title = wb.add_format({"bold": True, "font_size": 14})
        self.note = wb.add_format({"italic": True, "font_color": "#555555"})
        self.header = wb.add_format(
            {"bold": True, "bg_color": "#DDE3EA", "bottom": 1, "text_wrap": True, "valign": "top"}
        )
        self.cell = {k: wb.add_format({"num_format": f}) for k, f in NUMBER_FORMATS.items()}
        self.total = {
            k: wb.add_format({"num_format": f, "bold": True, "top": 1, "bg_color": "#F2F2F2"})
            for k, f in NUMBER_FORMATS.items()
        }
        self.band = {
            b: wb.add_format({"bg_color": fill, "font_color": font})
            for b, (fill, font) in BAND_COLOURS.items()
        }
        self.block_title = wb.add_format({"bold": True})


class _SheetWriter:
    """One report on one sheet: notes, header, rows, totals, band colours, then the chart below."""

    def __init__(self, wb: Workbook, ws: Worksheet, styles: _Styles, report: Report) -> None:
        self.wb, self.ws, self.s, self.report = wb, ws, styles, report
        q = report.query
        self.periodic = q.period is not None
        lead = [
            Column(
                "group", GROUP_HEADERS.get(q.by, q.by.title()), "text", self._group_width(), _field("group")
            )
        ]
        if self.periodic:
            lead.insert(0, Column("period", (q.period or "").title(), "text", 10, _field("period")))
        figures = [c for c in COLUMNS if q.by != "question" or not c.funnel]
        self.columns = [*lead, *figures]
        self.col = {c.key: i for i, c in enumerate(self.columns)}

    # -- layout ---------------------------------------------------------------------------------------

    def write(self) -> None:
        r, ws, s = self.report, self.ws, self.s
        ws.write(TITLE_ROW, 0, r.title, s.title)
        ws.write(NOTE_ROW, 0, _note(r), s.note)
        ws.write(LEGEND_ROW, 0, _legend(r), s.note)
        for i, c in enumerate(self.columns):
            ws.write(HEADER_ROW, i, c.header, s.header)
            ws.set_column(i, i, c.width)
        ws.set_row(HEADER_ROW, 30)
        frozen_cols = self.col["group"] + 1
        ws.freeze_panes(FIRST_DATA_ROW, frozen_cols)

        row = FIRST_DATA_ROW
        for data in r.rows:
            self._write_row(row, data, s.cell)
            row += 1
        last_group_row = row - 1
        if r.rows:
            ws.autofilter(HEADER_ROW, 0, last_group_row, len(self.columns) - 1)
        else:
            ws.write(row, self.col["group"], "No answers in this range.", s.note)
            row += 1
        all_label = f"All {GROUP_HEADERS.get(r.query.by, r.query.by).lower()}s"
        for total in r.totals:
            self._write_row(row, total, s.total, group=all_label)
            row += 1
        self._band_colours(FIRST_DATA_ROW, row - 1)
        ws.set_landscape()
        ws.fit_to_pages(1, 0)
        ws.repeat_rows(HEADER_ROW)

        chart_row = row + 2
        if self.periodic:
            self._periodic_chart(chart_row, all_label)
        else:
            self._bar_chart(chart_row)

    def _group_width(self) -> float:
        longest = max((len(x.group) for x in self.report.rows), default=0)
        return min(max(14, longest + 2), 40)

    def _write_row(self, row: int, data: ReportRow, fmts: dict[str, Any], group: str | None = None) -> None:
        for i, c in enumerate(self.columns):
            value = group if (group is not None and c.key == "group") else c.value(data)
            fmt = fmts[c.kind]
            if value is None:
                self.ws.write_blank(row, i, None, fmt)
            elif c.kind == "text":
                self.ws.write_string(row, i, str(value), fmt)
            else:
                self.ws.write_number(row, i, value, fmt)

    def _band_colours(self, first: int, last: int) -> None:
        """Colour CSAT % and Band by the Band cell of the same row (survives re-sorting)."""
        if last < first:
            return
        band_col = xl_col_to_name(self.col["band"])
        cells = [
            f"{xl_rowcol_to_cell(first, self.col[k])}:{xl_rowcol_to_cell(last, self.col[k])}"
            for k in ("csat_pct", "band")
        ]
        for band, fmt in self.s.band.items():
            self.ws.conditional_format(
                first,
                self.col["csat_pct"],
                last,
                self.col["csat_pct"],
                {
                    "type": "formula",
                    "criteria": f'=${band_col}{first + 1}="{band}"',
                    "format": fmt,
                    "multi_range": " ".join(cells),
                },
            )

    # -- charts ---------------------------------------------------------------------------------------

    def _ref(self, first: int, last: int, key: str) -> list[Any]:
        col = self.col[key]
        return [self.ws.name, first, col, last, col]

    def _bar_chart(self, at_row: int) -> None:
        """One bar per group with a figure; ranked rows come first in a report, so they are contiguous."""
        rated = [x for x in self.report.rows if x.csat_pct is not None]
        if not rated:
            return
        first, last = FIRST_DATA_ROW, FIRST_DATA_ROW + len(rated) - 1
        chart = self.wb.add_chart({"type": "bar"})
        chart.add_series(
            {
                "name": "CSAT %",
                "categories": self._ref(first, last, "group"),
                "values": self._ref(first, last, "csat_pct"),
                "fill": {"color": "#4A78A8"},
                "points": [
                    {"fill": {"color": BAND_COLOURS[x.band][1] if x.band in BAND_COLOURS else "#4A78A8"}}
                    for x in rated
                ],
                "x_error_bars": {
                    "type": "custom",
                    "plus_values": [round((x.csat_pct_high or 0) - (x.csat_pct or 0), 2) for x in rated],
                    "minus_values": [round((x.csat_pct or 0) - (x.csat_pct_low or 0), 2) for x in rated],
                    "end_style": 1,
                    "line": {"color": "#333333"},
                },
                "gap": 60,
            }
        )
        chart.set_title({"name": "CSAT % per group, with its 95 % interval", "name_font": {"size": 12}})
        chart.set_x_axis({"min": 0, "max": 100, "major_unit": 10, "num_format": "0", "name": "CSAT %"})
        chart.set_y_axis({"reverse": True, "crossing": "max"})  # rank 1 on top, value axis at the bottom
        chart.set_legend({"none": True})
        chart.set_size({"width": 760, "height": max(260, 90 + 24 * len(rated))})
        self.ws.insert_chart(at_row, self.col["group"], chart)

    def _periodic_chart(self, at_row: int, all_label: str) -> None:
        """CSAT % over the periods: a small period × group table (the chart's data), then lines."""
        r = self.report
        periods = sorted({x.period for x in [*r.rows, *r.totals] if x.period})
        if not periods:
            return
        weight: dict[str, int] = {}
        for x in r.rows:
            weight[x.group] = weight.get(x.group, 0) + x.responses
        value = {(x.period, x.group): x.csat_pct for x in r.rows if x.csat_pct is not None}
        charted = {g for _, g in value}  # a group without a figure in any period would be a legend entry only
        groups = sorted(charted, key=lambda g: (-weight[g], g))[:MAX_LINES]
        totals = {x.period: x for x in r.totals}

        ws, s = self.ws, self.s
        limited = f" ({len(groups)} with most answers)" if len(charted) > len(groups) else ""
        ws.write(at_row, 0, f"CSAT % per {r.query.period}{limited}", s.block_title)
        head = at_row + 1
        ws.write(head, 0, (r.query.period or "").title(), s.header)
        for j, g in enumerate([*groups, all_label], start=1):
            ws.write(head, j, g, s.header)
        for i, p in enumerate(periods, start=head + 1):
            ws.write_string(i, 0, p, s.cell["text"])
            for j, g in enumerate(groups, start=1):
                v = value.get((p, g))
                if v is None:
                    ws.write_blank(i, j, None, s.cell["pct"])
                else:
                    ws.write_number(i, j, v, s.cell["pct"])
            t = totals.get(p)
            if t is None or t.csat_pct is None:
                ws.write_blank(i, len(groups) + 1, None, s.total["pct"])
            else:
                ws.write_number(i, len(groups) + 1, t.csat_pct, s.total["pct"])
        first, last = head + 1, head + len(periods)

        chart = self.wb.add_chart({"type": "line"})
        for j in range(1, len(groups) + 1):
            chart.add_series(
                {
                    "name": [ws.name, head, j],
                    "categories": [ws.name, first, 0, last, 0],
                    "values": [ws.name, first, j, last, j],
                    "marker": {"type": "circle", "size": 5},
                    "line": {"width": 1.5},
                }
            )
        everyone = [totals.get(p) for p in periods]
        chart.add_series(
            {
                "name": [ws.name, head, len(groups) + 1],
                "categories": [ws.name, first, 0, last, 0],
                "values": [ws.name, first, len(groups) + 1, last, len(groups) + 1],
                "line": {"width": 3.5, "color": "#222222"},
                "marker": {"type": "square", "size": 6, "fill": {"color": "#222222"}},
                "y_error_bars": {
                    "type": "custom",
                    "plus_values": [_gap(t, up=True) for t in everyone],
                    "minus_values": [_gap(t, up=False) for t in everyone],
                    "line": {"color": "#222222"},
                },
            }
        )
        chart.show_blanks_as("gap")
        chart.set_title({"name": f"CSAT % per {r.query.period}", "name_font": {"size": 12}})
        chart.set_y_axis({"min": 0, "max": 100, "major_unit": 10, "num_format": "0", "name": "CSAT %"})
        chart.set_x_axis({"name": (r.query.period or "").title()})
        chart.set_legend({"position": "right"})
        chart.set_size({"width": 900, "height": 420})
        ws.insert_chart(last + 2, 0, chart)


def _gap(row: ReportRow | None, *, up: bool) -> float:
    if row is None or row.csat_pct is None:
        return 0.0
    edge = row.csat_pct_high if up else row.csat_pct_low
    return round(abs((edge if edge is not None else row.csat_pct) - row.csat_pct), 2)


def _note(report: Report) -> str:
    generated = report.generated_at
    if generated.tzinfo is not None:
        generated = generated.astimezone(UTC)
    return f"Dates are local days in {report.timezone}. Generated {generated:%Y-%m-%d %H:%M} UTC."


def _legend(report: Report) -> str:
    return (
        "Percentages are 0–100 (71.4 = 71.4 %). Low/high: the 95 % interval. Rank: by the interval's low"
        f" end. Fewer than {report.min_responses} answers: no figures, no rank (Flag: insufficient data)."
    )
