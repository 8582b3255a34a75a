"""The Excel export on stored calls (SQLite and PostgreSQL): what a trainer opens is what the report says.

``seed`` (also used by ``tests/test_pdf_export.py``) stores four weeks of surveyed calls in
Europe/Berlin: alice with the seeds' worked example (80 of 112 callers rate 4 or 5 → 71.4 %), Zoë with
90 %, bob with 50 % and carl with only 3 answers (insufficient data).
"""

from __future__ import annotations

import io
import os
import random
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import Engine, insert

from ivr.models import Answer, Call, SurveyState
from ivr.settings import Settings
from scoring.report import Report, build_report
from scoring.tallies import ReportQuery
from scoring.xlsx_export import render_xlsx

TZ = "Europe/Berlin"
FROM, TO = date(2026, 11, 2), date(2026, 11, 29)  # Monday 2 to Sunday 29 November: four ISO weeks
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ZOE = "Zoë Ångström"
#: CSAT answers per agent: (value, how many). alice is the seeds' example: 30 × 4 and 50 × 5 of 112.
RATINGS: dict[str, list[tuple[int, int]]] = {
    "alice": [(5, 50), (4, 30), (3, 12), (2, 12), (1, 8)],
    ZOE: [(5, 30), (4, 6), (3, 2), (2, 1), (1, 1)],
    "bob": [(5, 8), (4, 7), (3, 5), (2, 5), (1, 5)],
    "carl": [(5, 2), (1, 1)],
}
QUEUES = {"alice": ("support",), ZOE: ("support", "sales"), "bob": ("sales",), "carl": ("sales",)}
TEAMS = {"Nord": ["alice", ZOE], "Süd": ["bob", "carl"]}
NPS_FOR = {5: 10, 4: 9, 3: 7, 2: 5, 1: 0}


@dataclass(frozen=True)
class Seeded:
    uid: str
    agent: str
    queue: str
    connected_at: datetime  # naive UTC
    csat: int
    recording: str | None


@pytest.fixture(autouse=True)
def _no_local_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings() must see only what a test gives it: no ./csat.toml, no CSAT_* from the shell."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CSAT_")]:
        monkeypatch.delenv(name)


def settings_for(tmp: Path) -> Settings:
    return Settings(timezone=TZ, teams=TEAMS, data_dir=tmp)


def seed(engine: Engine, recordings_dir: Path) -> list[Seeded]:
    """Store the calls in one transaction (thousands of single-row commits would take seconds on
    PostgreSQL); some of alice's worst calls get a voice comment, half of them with a relative path."""
    out: list[Seeded] = []
    calls: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    n = 0
    for agent, ratings in RATINGS.items():
        values = [v for v, count in ratings for _ in range(count)]
        random.Random(agent).shuffle(values)  # no artificial trend over the weeks
        for k, value in enumerate(values):
            n += 1
            uid = f"1764{n:06d}.{n}"
            queue = QUEUES[agent][k % len(QUEUES[agent])]
            day = FROM + timedelta(days=(k * 28) // len(values))
            at = datetime.combine(day, datetime.min.time()) + timedelta(hours=7, minutes=(k * 37) % 600)
            recording = None
            if agent == "alice" and value == 1 and k % 2 == 0:
                name = f"2026/11/{uid}-comment.wav"
                recording = name if k % 4 == 0 else str(recordings_dir / name)
            given = [
                ("csat", "csat", value),
                ("fcr", "yesno", int(value >= 4)),
                ("nps", "nps", NPS_FOR[value]),
            ]
            if recording:
                given.append(("comment", "comment", None))
            calls.append(_call(uid, agent, queue, at, SurveyState.COMPLETED, len(given)))
            for pos, (question, qtype, v) in enumerate(given, start=1):
                answers.append(
                    {
                        "call_uniqueid": uid,
                        "linkedid": uid,
                        "queue": queue,
                        "agent": agent,
                        "agent_interface": None,
                        "survey": "default",
                        "question": question,
                        "question_type": qtype,
                        "position": pos,
                        "value": v,
                        "recording": recording if qtype == "comment" else None,
                        "tries": 1,
                        "answered_at": at + timedelta(minutes=4, seconds=10 * pos),
                    }
                )
            out.append(Seeded(uid, agent, queue, at, value, recording))
    for i in range(5):  # offered but never answered: bob's reach % is below 100
        at = datetime(2026, 11, 10, 9, 0) + timedelta(minutes=i)
        calls.append(_call(f"1765{i:06d}.9", "bob", "sales", at, SurveyState.NO_INPUT, 0))
    with engine.begin() as conn:
        conn.execute(insert(Call.__table__), calls)
        conn.execute(insert(Answer.__table__), answers)
    return out


def _call(uid: str, agent: str, queue: str, at: datetime, state: SurveyState, n: int) -> dict[str, Any]:
    return {
        "uniqueid": uid,
        "linkedid": uid,
        "queue": queue,
        "agent": agent,
        "connected_at": at,
        "offer": True,
        "survey_name": "default",
        "survey_state": state.value,
        "survey_started_at": at + timedelta(minutes=3),
        "answers_count": n,
        "updated_at": at + timedelta(minutes=5),
    }


def reports(engine: Engine, settings: Settings, **kw: object) -> list[Report]:
    first = build_report(engine, settings, ReportQuery(by="agent", date_from=FROM, date_to=TO, **kw), now=NOW)
    more = [
        build_report(
            engine, settings, ReportQuery(by=by, date_from=FROM, date_to=TO, **kw), now=NOW, refresh=False
        )
        for by in ("queue", "team", "question")
    ]
    return [first, *more]


def _sheet_rows(ws: Any) -> dict[str, int]:
    """Group name → row number, for the rows under the header."""
    return {ws.cell(r, 1).value: r for r in range(6, ws.max_row + 1) if ws.cell(r, 1).value}


def _header(ws: Any) -> list[str]:
    return [c.value for c in ws[5] if c.value]


def test_workbooks_match_the_reports(engine: Engine, tmp_path: Path) -> None:
    """One test per database for the whole range and per week: storing and rolling up is the slow part."""
    settings = settings_for(tmp_path)
    seed(engine, settings.recordings_dir)
    reps = reports(engine, settings)
    _check_whole_range(reps, render_xlsx(reps))
    weekly = build_report(
        engine, settings, ReportQuery(by="agent", date_from=FROM, date_to=TO, period="week"), now=NOW
    )
    _check_weekly(weekly, render_xlsx([weekly]))


def _check_whole_range(reps: list[Report], data: bytes) -> None:
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["By agent", "By queue", "By team", "By question"]
    ws = wb["By agent"]
    by_agent = reps[0]
    assert ws["A1"].value == by_agent.title == "CSAT by agent, 2026-11-02 to 2026-11-29"
    assert "Europe/Berlin" in ws["A2"].value
    assert "0–100" in ws["A3"].value
    header = _header(ws)
    assert header[:5] == ["Agent", "Rank", "Responses", "CSAT %", "CSAT % low"]
    assert ws.freeze_panes == "B6"  # header row and the name column stay in view
    assert ws.auto_filter.ref == f"A5:{ws.cell(5, len(header)).column_letter}9"
    col = {h: i + 1 for i, h in enumerate(header)}
    rows = _sheet_rows(ws)
    assert list(rows) == [ZOE, "alice", "bob", "carl", "All agents"]  # ranked, insufficient last, totals

    alice = next(r for r in by_agent.rows if r.group == "alice")
    a = rows["alice"]
    assert ws.cell(a, col["CSAT %"]).value == alice.csat_pct == pytest.approx(100 * 80 / 112)
    assert f"{ws.cell(a, col['CSAT %']).value:.1f}" == "71.4"
    # XlsxWriter writes 16 significant digits (Excel keeps 15): equal to the report as Excel sees it.
    assert ws.cell(a, col["CSAT % low"]).value == pytest.approx(alice.csat_pct_low, rel=1e-14)
    assert ws.cell(a, col["CSAT % high"]).value == pytest.approx(alice.csat_pct_high, rel=1e-14)
    assert ws.cell(a, col["Responses"]).value == 112
    assert ws.cell(a, col["Rank"]).value == 2
    assert ws.cell(a, col["NPS"]).value == pytest.approx(alice.nps, rel=1e-14)
    assert ws.cell(a, col["Band"]).value == "fair"
    assert ws.cell(a, col["Flag"]).value == "below target"
    assert ws.cell(a, col["CSAT %"]).number_format == "0.0"
    assert ws.cell(a, col["CSAT mean (1–5)"]).number_format == "0.00"
    assert ws.cell(a, col["NPS"]).number_format == "+0.0;-0.0;0.0"
    assert ws.cell(a, col["Responses"]).number_format == "0"
    assert ws.cell(rows["bob"], col["Reach %"]).value == pytest.approx(100 * 30 / 35)

    carl = rows["carl"]  # 3 answers: empty figures, no rank, flagged
    assert ws.cell(carl, col["Responses"]).value == 3
    for name in ("Rank", "CSAT %", "CSAT % low", "CSAT mean (1–5)", "NPS", "Band"):
        assert ws.cell(carl, col[name]).value is None, name
    assert ws.cell(carl, col["Flag"]).value == "insufficient data"

    total = rows["All agents"]
    assert ws.cell(total, col["Responses"]).value == by_agent.totals[0].responses == 185
    assert ws.cell(total, col["CSAT %"]).value == pytest.approx(by_agent.totals[0].csat_pct, rel=1e-14)
    assert ws.cell(total, 1).font.b

    rules = {r.formula[0]: ranges.sqref for ranges in ws.conditional_formatting for r in ranges.rules}
    band = ws.cell(5, col["Band"]).column_letter
    csat = ws.cell(5, col["CSAT %"]).column_letter
    assert set(rules) == {f'${band}6="good"', f'${band}6="fair"', f'${band}6="poor"'}
    assert all(str(sqref) == f"{csat}6:{csat}10 {band}6:{band}10" for sqref in rules.values())

    team = wb["By team"]
    assert _header(team)[0] == "Team"
    assert list(_sheet_rows(team)) == ["Nord", "Süd", "All teams"]
    question = wb["By question"]
    assert "Handled" not in _header(question) and "Reach %" not in _header(question)
    qrows, qcol = _sheet_rows(question), {h: i + 1 for i, h in enumerate(_header(question))}
    assert question.cell(qrows["fcr"], qcol["Flag"]).value == "no 1–5 ratings"
    assert question.cell(qrows["csat"], qcol["CSAT %"]).value == pytest.approx(reps[0].totals[0].csat_pct)

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        charts = sorted(n for n in z.namelist() if n.startswith("xl/charts/chart"))
        assert charts == [f"xl/charts/chart{i}.xml" for i in range(1, 5)]
        chart = z.read("xl/charts/chart1.xml").decode()
    assert '<c:barDir val="bar"/>' in chart and "<c:errBars>" in chart
    assert "'By agent'!$A$6:$A$8" in chart  # the three agents with a figure; carl has no bar
    assert "'By agent'!$D$6:$D$8" in chart


def _check_weekly(report: Report, data: bytes) -> None:
    """A sheet per week: the period column, and a chart of each agent's CSAT % over the weeks."""
    wb = openpyxl.load_workbook(io.BytesIO(data))
    ws = wb["By agent"]
    assert _header(ws)[:3] == ["Week", "Agent", "Rank"]
    assert ws.freeze_panes == "C6"
    weeks = ["2026-W45", "2026-W46", "2026-W47", "2026-W48"]
    assert sorted({r.period for r in report.rows}) == weeks

    # The chart's data block: one line per week, one column per agent with a figure, then everyone.
    head = next(r for r in range(1, ws.max_row + 1) if ws.cell(r, 1).value == "Week" and r > 5)
    names = [ws.cell(head, c).value for c in range(2, ws.max_column + 1) if ws.cell(head, c).value]
    assert names == ["alice", ZOE, "All agents"]  # bob and carl never reach 10 answers in a week
    for i, week in enumerate(weeks, start=head + 1):
        assert ws.cell(i, 1).value == week
        alice = next(r for r in report.rows if r.group == "alice" and r.period == week)
        assert ws.cell(i, 2).value == pytest.approx(alice.csat_pct, rel=1e-14)
        total = next(t for t in report.totals if t.period == week)
        assert ws.cell(i, 4).value == pytest.approx(total.csat_pct, rel=1e-14)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        chart = z.read("xl/charts/chart1.xml").decode()
    assert "<c:lineChart>" in chart and chart.count("<c:ser>") == 3


def test_an_empty_range_still_makes_a_readable_sheet() -> None:
    query = ReportQuery(by="queue", date_from=FROM, date_to=TO)
    empty = Report(query, [], [], TZ, 10, NOW)
    data = render_xlsx([empty])
    ws = openpyxl.load_workbook(io.BytesIO(data))["By queue"]
    assert ws["A1"].value == empty.title
    assert ws["A6"].value == "No answers in this range."
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert not [n for n in z.namelist() if n.startswith("xl/charts/")]
