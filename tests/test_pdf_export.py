"""The PDF report and the agent training report, read back the way a person would: as text and as pages.

``pdftotext -layout`` gives the words on the pages, ``pdftoppm`` the pictures: a page that renders
blank or a chart that is missing shows up as too few ink pixels. The data is ``tests.test_xlsx_export``'s
``seed`` on SQLite and PostgreSQL (alice: 80 of 112 satisfied → 71.4 %; carl: 3 answers).
"""

from __future__ import annotations

import os
import re
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib.image
import pytest
from sqlalchemy import Engine

from scoring.agent_report import (
    AgentReportData,
    agent_report_data,
    compare,
    range_words,
    render_agent_report,
    summary,
)
from scoring.figures import Tally
from scoring.pdf_export import flag_text, render_pdf
from scoring.report import Report, ReportRow, row_for
from scoring.tallies import ReportQuery
from tests.test_xlsx_export import FROM, NOW, TO, TZ, ZOE, Seeded, reports, seed, settings_for


@pytest.fixture(autouse=True)
def _no_local_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings() must see only what a test gives it: no ./csat.toml, no CSAT_* from the shell."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CSAT_")]:
        monkeypatch.delenv(name)


def pdf_text(pdf: bytes, tmp: Path, name: str) -> str:
    path = tmp / f"{name}.pdf"
    path.write_bytes(pdf)
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


def words(text: str) -> str:
    """Text with every run of white space (line breaks, no-break spaces) as one space."""
    return " ".join(text.split())


def page_ink(pdf: bytes, tmp: Path, name: str) -> list[int]:
    """Rendered pages at 50 dpi, as the number of pixels that are not (near) white on each."""
    path = tmp / f"{name}.pdf"
    path.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(path), str(tmp / name)], check=True)
    pages = sorted(tmp.glob(f"{name}-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    out = []
    for page in pages:
        pixels = matplotlib.image.imread(page)[:, :, :3]
        out.append(int((pixels.min(axis=2) < 0.85).sum()))
    return out


def images(pdf: bytes, tmp: Path, name: str) -> list[tuple[int, int, int]]:
    """(page, width px, height px) of each embedded picture: the charts are images."""
    path = tmp / f"{name}.pdf"
    path.write_bytes(pdf)
    listing = subprocess.run(["pdfimages", "-list", str(path)], check=True, capture_output=True, text=True)
    return [
        (int(f[0]), int(f[3]), int(f[4])) for f in (line.split() for line in listing.stdout.splitlines()[2:])
    ]


# -- the report PDF -----------------------------------------------------------------------------------


def test_report_pdf_shows_chart_and_every_figure(engine: Engine, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    seed(engine, settings.recordings_dir)
    by_agent, by_queue, _, by_question = reports(engine, settings)
    pdf = render_pdf(by_agent)
    assert pdf.startswith(b"%PDF")

    text = pdf_text(pdf, tmp_path, "agents")
    flat = words(text)
    assert "CSAT by agent, 2026-11-02 to 2026-11-29" in flat
    assert "Local days in Europe/Berlin" in flat
    alice = next(r for r in by_agent.rows if r.group == "alice")
    assert f"{alice.csat_pct:.1f}" == "71.4"
    alice_line = next(line for line in text.splitlines() if line.lstrip().startswith("alice"))
    assert words(alice_line) == (
        f"alice 2 112 71.4 [{alice.csat_pct_low:.1f}–{alice.csat_pct_high:.1f}] {alice.csat_mean:.2f}"
        f" {alice.nps:+.1f} {alice.fcr_pct:.1f} 100.0 below target (80 %)"
    )
    carl_line = next(line for line in text.splitlines() if line.lstrip().startswith("carl"))
    assert words(carl_line) == "carl 3 insufficient data — — — — insufficient data (3 of 10)"
    assert ZOE in text  # accents survive: the font is DejaVu, not a Latin-1 core font
    assert images(pdf, tmp_path, "agents") == [(1, 1635, 295)]  # the chart, full width, 4 bars high
    totals = next(line for line in text.splitlines() if line.lstrip().startswith("All agents"))
    assert " 185 " in totals and f"{by_agent.totals[0].csat_pct:.1f}" in totals

    ink = page_ink(pdf, tmp_path, "agents")
    assert len(ink) == 1
    assert ink[0] > 20_000  # bars, whiskers, the table: far from an empty page (~100 for the footer)

    # Questions without 1–5 ratings (yes/no, NPS) say so instead of "insufficient data".
    fcr = next(r for r in by_question.rows if r.group == "fcr")
    assert flag_text(fcr, 10) == "no 1–5 ratings"
    assert flag_text(next(r for r in by_queue.rows if r.group == "sales"), 10) == "below target (80 %)"


def test_a_weekly_report_charts_the_weeks_and_lists_every_row(tmp_path: Path) -> None:
    weeks = ("2026-W45", "2026-W46", "2026-W47")
    rows, totals = [], []
    for k, week in enumerate(weeks):
        everyone = Tally()
        for name, good in (("Ana Šimić", 30 + k), ("Jörg", 12 - 5 * k)):
            tally = Tally()
            tally.add_answers("csat", {5: good, 1: 6})
            everyone.add(tally)
            rows.append(_row_with(name, week, tally))
        totals.append(_row_with("(all)", week, everyone))
    query = ReportQuery(by="agent", date_from=date(2026, 11, 2), date_to=date(2026, 11, 22), period="week")
    pdf = render_pdf(Report(query, rows, totals, TZ, 10, NOW))
    text = pdf_text(pdf, tmp_path, "weekly")
    assert "CSAT by agent per week, 2026-11-02 to 2026-11-22" in text
    for week in weeks:
        assert re.search(rf"{week}\s+Ana Šimić\s+\d", text), week
        assert re.search(rf"{week}\s+All agents\s", text), week
    assert re.search(r"2026-W47\s+Jörg\s+8\s+insufficient data", text)  # 2 + 6 answers
    assert "Grey band: the 95 % interval" in words(text)
    assert [page for page, _, _ in images(pdf, tmp_path, "weekly")] == [1]  # one line chart
    assert page_ink(pdf, tmp_path, "weekly")[0] > 20_000


def _row_with(group: str, period: str, tally: Tally) -> ReportRow:
    return row_for(group, period, tally, min_n=10, confidence=0.95, good_pct=80, poor_pct=60, target_pct=80.0)


def test_a_long_report_repeats_the_table_header_on_every_page(tmp_path: Path) -> None:
    query = ReportQuery(by="agent", date_from=FROM, date_to=TO)
    rows = []
    for i in range(30):
        tally = Tally()
        tally.add_answers("csat", {5: 20 + i, 2: 10})
        rows.append(
            row_for(
                f"agent{i:02d}",
                None,
                tally,
                min_n=10,
                confidence=0.95,
                good_pct=80,
                poor_pct=60,
                target_pct=80.0,
            )
        )
    report = Report(query, rows, [], TZ, 10, NOW)
    pdf = render_pdf(report)
    text = pdf_text(pdf, tmp_path, "long")
    pages = text.split("\f")[:-1]
    # Two charts (22 bars, then 8), then 30 table rows that do not fit on the page left over.
    assert [page for page, _, _ in images(pdf, tmp_path, "long")] == [1, 2]
    table_pages = [p for p in pages if re.search(r"^\s*agent\d\d ", p, flags=re.M)]
    assert len(table_pages) >= 2
    assert all("CSAT % [95 % interval]" in p and "Rank" in p for p in table_pages)  # header on each
    rows_seen = re.findall(r"^\s*(agent\d\d)\s+\d+\s", text, flags=re.M)
    assert sorted(rows_seen) == [f"agent{i:02d}" for i in range(30)]  # every row once, none cut
    assert all(n > 2_000 for n in page_ink(pdf, tmp_path, "long"))


# -- the agent training report ------------------------------------------------------------------------


def _expected_lowest(seeded: list[Seeded]) -> list[Seeded]:
    low = [s for s in seeded if s.agent == "alice" and s.csat <= 3]
    return sorted(low, key=lambda s: (s.csat, -s.connected_at.timestamp(), s.uid))[:10]


def test_agent_report_for_a_trainer(engine: Engine, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    seeded = seed(engine, settings.recordings_dir)
    data = agent_report_data(engine, settings, "alice", FROM, TO, now=NOW)

    assert data.row is not None and data.row.responses == 112
    assert data.distribution == {1: 8, 2: 12, 3: 12, 4: 30, 5: 50}
    assert [w.period for w in data.weekly] == ["2026-W45", "2026-W46", "2026-W47", "2026-W48"]
    assert sum(w.responses for w in data.weekly) == 112
    assert data.team == "Nord" and data.team_row is not None and data.team_row.responses == 152
    assert [q.group for q in data.queue_rows] == ["support"]
    assert data.queue_rows[0].responses == 112 + 20  # alice and Zoë's support calls, all agents
    assert data.everyone is not None and data.everyone.responses == 185

    expected = _expected_lowest(seeded)
    assert [c.uniqueid for c in data.lowest] == [s.uid for s in expected]
    assert [c.csat for c in data.lowest] == [1] * 8 + [2] * 2
    berlin = ZoneInfo(TZ)
    assert [c.when for c in data.lowest] == [
        s.connected_at.replace(tzinfo=UTC).astimezone(berlin) for s in expected
    ]
    first = data.lowest[0]
    assert first.answers[:3] == [("csat", "1"), ("fcr", "no"), ("nps", "0")]
    with_comment = [c for c in data.lowest if c.comment]
    assert with_comment, "some of alice's 1-rated calls carry a voice comment"
    for c in with_comment:
        assert c.answers[-1] == ("comment", "voice comment")
        assert c.comment is not None and c.comment.is_relative_to(settings.recordings_dir)
        assert c.comment_link == c.comment.as_uri() and c.comment_link.startswith("file:///")

    sentences = words(" ".join(summary(data)))
    assert sentences.startswith(
        "Between 2 and 29 November 2026, 112 callers rated you. 80 of them (71 %, likely between 62 % and"
        " 79 %) were satisfied or very satisfied."
    )
    assert (
        "Your team (Nord): 76 % (likely between 69 % and 82 %). This is within the normal range for the team."
        in sentences
    )

    pdf = render_agent_report(data)
    text = pdf_text(pdf, tmp_path, "alice")
    flat = words(text)
    assert "Your callers' feedback: alice" in flat
    assert "80 of them (71 %, likely between 62 % and 79 %) were satisfied or very satisfied" in flat
    assert "within the normal range for the team" in flat
    assert "Wilson" not in text.split("\f")[0]  # no jargon on the page the agent gets
    assert "Lowest-rated calls" in text
    for c in data.lowest:
        assert f"{c.when:%a %d %b %H:%M}" in text, c.uniqueid
        assert c.uniqueid in text
    for c in with_comment:  # a clickable link to each voice comment WAV
        assert f"/URI ({c.comment_link})".encode() in pdf
    ink = page_ink(pdf, tmp_path, "alice")
    assert len(ink) == 2 and ink[0] > 15_000 and ink[1] > 5_000

    carl = agent_report_data(engine, settings, "carl", FROM, TO, now=NOW)
    assert carl.row is not None and carl.row.csat_pct is None and carl.lowest[0].csat == 1
    assert words(summary(carl)[0]).startswith(
        "Between 2 and 29 November 2026, 3 callers rated you: not enough answers yet (3 of 10 needed)."
    )
    assert [c.label for c in carl.comparisons] == [
        "You",
        "Your team (Süd)",
        "Queue sales (all agents)",
        "Everyone",
    ]


def _row(group: str, satisfied: int, unsatisfied: int) -> object:
    tally = Tally()
    tally.add_answers("csat", {5: satisfied, 1: unsatisfied})
    return row_for(group, None, tally, min_n=10, confidence=0.95, good_pct=80, poor_pct=60, target_pct=80.0)


def _data(me: object, team: object | None, everyone: object | None = None) -> AgentReportData:
    return AgentReportData(
        agent="ana",
        display_name="Ana Šimić",
        date_from=date(2026, 10, 26),
        date_to=date(2026, 11, 8),
        timezone=TZ,
        min_responses=10,
        target_pct=80.0,
        generated_at=datetime(2026, 11, 9, tzinfo=UTC),
        row=me,  # type: ignore[arg-type]
        weekly=[],
        team="Blue" if team else None,
        team_row=team,  # type: ignore[arg-type]
        team_weekly=[],
        queue_rows=[],
        everyone=everyone,  # type: ignore[arg-type]
    )


def test_summary_says_above_or_below_only_when_the_intervals_do_not_overlap() -> None:
    strong, team = _row("ana", 190, 10), _row("Blue", 140, 60)  # 95 % [91–97] vs 70 % [63–76]
    assert compare(strong, team) == "above"  # type: ignore[arg-type]
    assert "This is above the team." in summary(_data(strong, team))[1]
    weak = _row("ana", 20, 30)  # 40 % [28–54]
    assert "This is below the team." in summary(_data(weak, team))[1]
    close = _row("ana", 15, 5)  # 75 % [53–89]: overlaps 63–76
    assert "This is within the normal range for the team." in summary(_data(close, team))[1]
    no_team = summary(_data(close, None, everyone=team))
    assert no_team[1].startswith("Everyone in the call centre: 70")
    assert no_team[1].endswith("within the normal range for the call centre.")
    assert summary(_data(_row("ana", 0, 0), team)) == [
        "Between 26 October and 8 November 2026, no caller rated you yet."
    ]


def test_range_words() -> None:
    assert range_words(date(2026, 11, 2), date(2026, 11, 29)) == "Between 2 and 29 November 2026"
    assert range_words(date(2026, 11, 2), date(2026, 11, 2)) == "On 2 November 2026"
    assert range_words(date(2025, 12, 29), date(2026, 1, 4)) == "Between 29 December 2025 and 4 January 2026"


def test_nothing_to_report_still_reads_as_a_report(tmp_path: Path) -> None:
    empty = Report(ReportQuery(by="team", date_from=FROM, date_to=TO), [], [], TZ, 10, NOW)
    flat = words(pdf_text(render_pdf(empty), tmp_path, "empty"))
    assert "CSAT by team, 2026-11-02 to 2026-11-29" in flat and "No answers in this range." in flat

    pdf = render_agent_report(_data(None, None))
    pages = pdf_text(pdf, tmp_path, "nobody").split("\f")
    assert "Your callers' feedback: Ana Šimić" in words(pages[0])
    assert "Between 26 October and 8 November 2026, no caller rated you yet." in words(pages[0])
    assert "not enough answers yet (0 of 10)" in words(pages[0])
    assert "no caller rated you below 4" in words(pages[1])
