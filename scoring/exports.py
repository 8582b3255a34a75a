"""One entry point that turns a report query into a file's bytes, in any export format.

The CLI (``csat report``), the scheduled exports and the dashboard all come through here, so a report
looks the same whoever asked for it. CSV and JSON are written here; XLSX and PDF have their own modules.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import datetime
from typing import Any, get_args

from sqlalchemy import Engine

from ivr.output import iso_utc
from ivr.settings import ExportFormat, ReportBy, Settings
from scoring.report import Report, build_report
from scoring.tallies import ReportQuery

#: Columns of CSV exports and of the terminal table, in order (JSON has every field of ReportRow).
CSV_COLUMNS = (
    "period",
    "group",
    "rank",
    "responses",
    "csat_pct",
    "csat_pct_low",
    "csat_pct_high",
    "csat_mean",
    "nps",
    "nps_low",
    "nps_high",
    "ces_mean",
    "ces_easy_pct",
    "fcr_pct",
    "handled",
    "offered",
    "completed",
    "partial",
    "no_input",
    "reach_pct",
    "comments",
    "band",
    "target_pct",
    "flag",
)

EXTENSIONS: dict[str, str] = {"csv": "csv", "json": "json", "xlsx": "xlsx", "pdf": "pdf"}


def rounded(value: Any, digits: int = 2) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def report_as_json(report: Report) -> dict[str, Any]:
    q = report.query
    return {
        "title": report.title,
        "by": q.by,
        "period": q.period,
        "from": q.date_from.isoformat(),
        "to": q.date_to.isoformat(),
        "queue": q.queue,
        "question": q.question,
        "timezone": report.timezone,
        "min_responses": report.min_responses,
        "generated_at": iso_utc(report.generated_at.replace(tzinfo=None)),
        "rows": [{k: rounded(v) for k, v in r.as_dict().items()} for r in report.rows],
        "totals": [{k: rounded(v) for k, v in r.as_dict().items()} for r in report.totals],
    }


def render_json(report: Report) -> bytes:
    return (json.dumps(report_as_json(report), indent=2, ensure_ascii=False) + "\n").encode()


def render_csv(report: Report) -> bytes:
    """Spreadsheet-friendly: one header, one line per row, totals last (group ``(all)``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in [*report.rows, *report.totals]:
        data = row.as_dict()
        writer.writerow(["" if data[c] is None else rounded(data[c]) for c in CSV_COLUMNS])
    return buf.getvalue().encode()


def render(
    engine: Engine,
    settings: Settings,
    query: ReportQuery,
    fmt: ExportFormat,
    *,
    now: datetime | None = None,
    report: Report | None = None,
) -> bytes:
    """The export file for ``query``. XLSX holds one sheet per grouping (the asked-for one first)."""
    report = report or build_report(engine, settings, query, now=now)
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "pdf":
        from scoring.pdf_export import render_pdf

        return render_pdf(report)
    if fmt == "xlsx":
        from scoring.xlsx_export import render_xlsx

        others = [by for by in get_args(ReportBy) if by != query.by]
        more = [
            build_report(engine, settings, replace(query, by=by), now=now, refresh=False) for by in others
        ]
        return render_xlsx([report, *more])
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(get_args(ExportFormat))}")


def _pct(value: float | None, low: float | None = None, high: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" + (f" [{low:.0f}, {high:.0f}]" if low is not None and high is not None else "")


def render_table(report: Report) -> str:
    """The terminal view: one line per group, intervals in brackets, "insufficient data" spelled out."""
    from ivr.output import render as render_rows

    columns = ["period", "group", "rank", "n", "CSAT %", "mean", "NPS", "FCR %", "offered", "reach %", "flag"]
    if report.query.period is None:
        columns.remove("period")
    lines = []
    for r in [*report.rows, *report.totals]:
        insufficient = r.flag == "insufficient_data"
        lines.append(
            {
                "period": r.period,
                "group": r.group,
                "rank": r.rank,
                "n": r.responses,
                "CSAT %": "insufficient data"
                if insufficient
                else _pct(r.csat_pct, r.csat_pct_low, r.csat_pct_high),
                "mean": "-" if r.csat_mean is None else f"{r.csat_mean:.2f}",
                "NPS": _pct(r.nps, r.nps_low, r.nps_high),
                "FCR %": _pct(r.fcr_pct),
                "offered": r.offered,
                "reach %": _pct(r.reach_pct),
                "flag": r.flag,
            }
        )
    note = (
        f"{report.title} ({report.timezone}). CSAT % with its 95 % interval; ranked by the interval's"
        f" lower bound; fewer than {report.min_responses} answers = insufficient data."
    )
    return note + "\n\n" + render_rows(lines, "table", columns)
