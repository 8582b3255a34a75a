"""The dashboard pages: who sees which rows, that the figures are the reports', exports, recordings, admin.

Runs on SQLite and PostgreSQL (the ``engine`` fixture). Seeded data (``tests/web_support.py``): alice
and bob in team nord, carol in team sued, an XSS-probe agent in no team; min_responses = 5.
"""

from __future__ import annotations

import html
import io
import json
import re
import struct
import wave
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from openpyxl import load_workbook
from sqlalchemy import Engine, select, update

from ivr.models import Answer, User
from ivr.settings import Settings
from scoring import exports
from scoring.report import build_report, default_range
from scoring.tallies import ReportQuery
from scoring.web import page_data as pd
from scoring.web.app import create_app
from tests.web_support import XSS_AGENT, csrf_of, login, seed_calls, seed_users, web_settings

ClientAs = Callable[[str], TestClient]


@pytest.fixture
def web_app_settings(tmp_path: Path) -> Settings:
    """Every app in this module keeps its recordings under the test's own tmp dir."""
    return web_settings(data_dir=tmp_path)


def tagged(page: str, attr: str) -> list[str]:
    """The values of ``attr`` on table rows, in page order, unescaped."""
    return [html.unescape(v) for v in re.findall(rf'<tr[^>]*\b{attr}="([^"]*)"', page)]


def row_html(page: str, attr: str, value: str) -> str:
    escaped = str(escape(value))  # as Jinja writes it
    start = page.index(f'{attr}="{escaped}"')
    return page[start : page.index("</tr>", start)]


def chart(page: str, element_id: str) -> dict:
    found = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S)
    assert found, f"no chart data {element_id}"
    return json.loads(found.group(1))


def last_30_days(settings: Settings) -> tuple[date, date]:
    return default_range(settings)


def write_wav(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", (i % 40) * 400 - 8000) for i in range(4000)))
    return path.read_bytes()


# -- overview -----------------------------------------------------------------------------------------


def test_overview_shows_the_centre_to_an_admin_and_only_their_teams_to_a_supervisor(
    client_as: ClientAs, engine: Engine, web_app_settings: Settings
) -> None:
    first, last = last_30_days(web_app_settings)
    everyone = build_report(engine, web_app_settings, ReportQuery(by="queue", date_from=first, date_to=last))
    by_team = build_report(engine, web_app_settings, ReportQuery(by="team", date_from=first, date_to=last))
    nord = next(r for r in by_team.rows if r.group == "nord")
    total = everyone.totals[0]

    page = client_as("admin").get("/?range=30d")
    assert page.status_code == 200
    assert f"{total.csat_pct:.1f} %" in page.text
    assert f"{total.csat_pct_low:.1f}–{total.csat_pct_high:.1f} %" in page.text
    assert f"n = {total.responses}" in page.text
    assert tagged(page.text, "data-group") == [r.group for r in everyone.rows]  # queues, ranked
    trend = chart(page.text, "trend-data")
    assert len(trend["labels"]) == 30 and sum(trend["series"][0]["n"]) == total.responses

    sup = client_as("sup").get("/?range=30d")
    assert f"{nord.csat_pct:.1f} %" in sup.text and f"n = {nord.responses}" in sup.text
    assert f"{total.csat_pct:.1f} %" not in sup.text
    assert "your teams: nord" in sup.text
    handled = re.search(r"Handled</th>\s*<td class=\"num\">(\d+)</td>", sup.text)
    assert handled and int(handled.group(1)) == nord.handled


def test_overview_range_tabs_and_an_agent_is_sent_to_their_own_page(client_as: ClientAs) -> None:
    admin = client_as("admin")
    today = admin.get("/?range=today")
    assert today.status_code == 200 and len(chart(today.text, "trend-data")["labels"]) == 1
    assert 'class="active" aria-current="page">Today<' in today.text
    assert len(chart(admin.get("/?range=7d").text, "trend-data")["labels"]) == 7
    bad = admin.get("/?range=fortnight")
    assert bad.status_code == 400 and "unknown range" in bad.text

    response = client_as("alice").get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/agents/alice"


# -- leaderboard --------------------------------------------------------------------------------------


def test_leaderboard_ranks_as_the_report_does_and_shows_each_viewer_their_agents(
    client_as: ClientAs, engine: Engine, web_app_settings: Settings
) -> None:
    first, last = last_30_days(web_app_settings)
    report = build_report(engine, web_app_settings, ReportQuery(by="agent", date_from=first, date_to=last))

    page = client_as("admin").get("/leaderboard").text
    shown = tagged(page, "data-agent")
    assert shown == [r.group for r in report.rows]
    assert shown[:3] == ["alice", "bob", "carol"]
    for r in report.rows[:3]:
        line = row_html(page, "data-agent", r.group)
        assert f"{r.csat_pct:.1f} %" in line
        assert f"{r.csat_pct_low:.1f}–{r.csat_pct_high:.1f} %" in line
        assert f'class="fill fill-{r.band}" style="width: {round(r.csat_pct, 2)}%"' in line
    probe = row_html(page, "data-agent", XSS_AGENT)
    assert 'class="insufficient"' in probe and "insufficient data" in probe

    assert tagged(client_as("sup").get("/leaderboard").text, "data-agent") == ["alice", "bob"]
    assert tagged(client_as("trainer").get("/leaderboard").text, "data-agent") == ["carol"]


def test_leaderboard_filters(client_as: ClientAs, engine: Engine, web_app_settings: Settings) -> None:
    admin = client_as("admin")
    first, last = last_30_days(web_app_settings)
    sales = build_report(
        engine, web_app_settings, ReportQuery(by="agent", date_from=first, date_to=last, queue="sales")
    )
    page = admin.get("/leaderboard?queue=sales").text
    assert tagged(page, "data-agent") == [r.group for r in sales.rows]
    alice = next(r for r in sales.rows if r.group == "alice")
    assert f">{alice.responses}<" in row_html(page, "data-agent", "alice")

    assert tagged(admin.get("/leaderboard?team=sued").text, "data-agent") == ["carol"]
    assert client_as("sup").get("/leaderboard?team=sued").status_code == 403

    week = admin.get("/leaderboard?range=7d").text
    assert f"7 days ({(last - timedelta(days=6)).isoformat()} to {last.isoformat()})" in week
    custom = admin.get(f"/leaderboard?range=custom&from={last.isoformat()}&to={last.isoformat()}").text
    assert f"{last.isoformat()} to {last.isoformat()}" in custom
    assert admin.get("/leaderboard?from=yesterday").status_code == 400


# -- who may see what ---------------------------------------------------------------------------------


def test_pages_an_agent_and_a_supervisor_may_not_open(client_as: ClientAs) -> None:
    alice = client_as("alice")
    for url in ("/leaderboard", "/queues", "/queues/support", "/teams", "/teams/nord", "/agents/bob"):
        assert alice.get(url).status_code == 403, url
    own = alice.get("/agents/alice")
    assert own.status_code == 200 and "alice" in own.text

    sup = client_as("sup")
    assert sup.get("/teams/sued").status_code == 403
    assert sup.get("/agents/carol").status_code == 403
    assert sup.get("/agents/bob").status_code == 200
    trainer = client_as("trainer")
    assert trainer.get("/agents/alice").status_code == 403
    assert trainer.get("/teams/sued").status_code == 200
    for who in (alice, sup, trainer):
        assert who.get("/admin/users").status_code == 403
        assert who.get("/admin/settings").status_code == 403
    assert client_as("admin").get("/agents/nobody-at-all").status_code == 404


def test_agent_names_are_escaped_and_url_encoded(client_as: ClientAs) -> None:
    admin = client_as("admin")
    board = admin.get("/leaderboard").text
    assert "&lt;script&gt;alert(" in board and "<script>alert" not in board
    assert 'href="/agents/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E"' in board
    page = admin.get("/agents/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E")
    assert page.status_code == 200
    assert "&lt;script&gt;alert(" in page.text and "<script>alert" not in page.text
    # in chart data too: tojson escapes < and >, so the name cannot close the JSON script block
    assert chart(page.text, "trend-data")["series"][0]["label"] == XSS_AGENT


# -- agent page ---------------------------------------------------------------------------------------


def test_agent_page_figures_distribution_comparison_and_calls(
    client_as: ClientAs, engine: Engine, web_app_settings: Settings
) -> None:
    page = client_as("sup").get("/agents/alice?range=30d").text
    first, last = last_30_days(web_app_settings)
    report = build_report(engine, web_app_settings, ReportQuery(by="agent", date_from=first, date_to=last))
    alice = next(r for r in report.rows if r.group == "alice")
    assert f"{alice.csat_pct:.1f} %" in page
    assert f"95 % interval {alice.csat_pct_low:.1f}–{alice.csat_pct_high:.1f} %" in page
    assert chart(page, "dist-data")["counts"] == [1, 0, 0, 3, 4]  # seeded 5,5,4,5,4,1,5,4
    weekly = chart(page, "trend-data")
    assert [s["label"] for s in weekly["series"]] == ["alice", "team nord"]
    assert sum(weekly["series"][0]["n"]) == 8
    assert ">Team nord</a>" in page and "Everyone" in page
    calls = re.findall(r'<td class="num rating-(\w+)">', page)
    assert calls == ["1", "4", "4", "4", "5", "5", "5", "5"]  # lowest first
    assert "csat: 1 · fcr: no · nps: 2" in re.sub(r"<[^>]+>", "", page)
    assert 'href="/export/agent-report/alice.pdf?from=' in page


def test_agent_calls_are_paginated_lowest_first(engine: Engine, web_app_settings: Settings) -> None:
    seed_calls(engine)
    first, last = last_30_days(web_app_settings)
    one = pd.agent_calls(engine, web_app_settings, "alice", first, last, page=1, per_page=3)
    three = pd.agent_calls(engine, web_app_settings, "alice", first, last, page=3, per_page=3)
    assert (one.total, one.pages) == (8, 3)
    assert [c.csat for c in one.calls] == [1, 4, 4] and [c.csat for c in three.calls] == [5, 5]
    assert one.calls[0].talk == "3:50" and one.calls[0].when.tzinfo is not None
    beyond = pd.agent_calls(engine, web_app_settings, "alice", first, last, page=99, per_page=3)
    assert beyond.page == 3


# -- recordings ---------------------------------------------------------------------------------------


def _comment_answer(engine: Engine, agent: str, recording: str, nth: int = 0) -> int:
    """The seed's ``nth`` voice-comment row of ``agent`` (rating-1 calls), pointed at ``recording``."""
    with engine.begin() as conn:
        ids = conn.execute(
            select(Answer.id)
            .where(Answer.agent == agent, Answer.question_type == "comment")
            .order_by(Answer.id)
        ).scalars()
        answer_id = list(ids)[nth]
        conn.execute(update(Answer).where(Answer.id == answer_id).values(recording=recording))
    return int(answer_id)


def test_recordings_play_for_those_who_may_see_the_agent_and_only_inside_the_folder(
    client_as: ClientAs, engine: Engine, web_app_settings: Settings, tmp_path: Path
) -> None:
    admin = client_as("admin")
    wav = write_wav(web_app_settings.recordings_dir / "2026/11/01/alice-comment.wav")
    answer_id = _comment_answer(engine, "alice", "2026/11/01/alice-comment.wav")

    page = admin.get("/agents/alice?range=30d").text
    assert f'<audio controls preload="none" src="/recordings/{answer_id}">' in page
    played = admin.get(f"/recordings/{answer_id}")
    assert played.status_code == 200 and played.headers["content-type"] == "audio/wav"
    assert played.content == wav
    assert client_as("sup").get(f"/recordings/{answer_id}").status_code == 200
    assert client_as("alice").get(f"/recordings/{answer_id}").status_code == 200
    assert client_as("trainer").get(f"/recordings/{answer_id}").status_code == 403

    (tmp_path / "outside.wav").write_bytes(b"RIFF-not-yours")
    outside = _comment_answer(engine, "carol", "../outside.wav")
    refused = admin.get(f"/recordings/{outside}")
    assert refused.status_code == 404 and b"not-yours" not in refused.content
    absolute = _comment_answer(engine, "carol", str(tmp_path / "outside.wav"), nth=1)
    assert admin.get(f"/recordings/{absolute}").status_code == 404
    assert admin.get("/recordings/999999").status_code == 404


def test_recording_file_stays_inside_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    write_wav(root / "a" / "ok.wav")
    (tmp_path / "secret.wav").write_bytes(b"x")
    (root / "link.wav").symlink_to(tmp_path / "secret.wav")
    assert pd.recording_file(root, "a/ok.wav") == (root / "a" / "ok.wav").resolve()
    assert pd.recording_file(root, "../secret.wav") is None
    assert pd.recording_file(root, "a/../../secret.wav") is None
    assert pd.recording_file(root, str(tmp_path / "secret.wav")) is None
    assert pd.recording_file(root, "link.wav") is None  # a symlink out of the folder
    assert pd.recording_file(root, "a/missing.wav") is None


# -- queues and teams ---------------------------------------------------------------------------------


def test_queue_pages_show_queue_wide_figures_and_only_visible_agents(
    client_as: ClientAs, engine: Engine, web_app_settings: Settings
) -> None:
    first, last = last_30_days(web_app_settings)
    queues = build_report(engine, web_app_settings, ReportQuery(by="queue", date_from=first, date_to=last))
    support = next(r for r in queues.rows if r.group == "support")
    sup = client_as("sup")
    listing = sup.get("/queues").text
    assert tagged(listing, "data-group") == [r.group for r in queues.rows]
    assert f"{support.csat_pct:.1f} %" in row_html(listing, "data-group", "support")

    page = sup.get("/queues/support").text
    assert f"{support.csat_pct:.1f} %" in page and f"n = {support.responses}" in page
    assert tagged(page, "data-agent") == ["alice", "bob"]
    admin_page = client_as("admin").get("/queues/support").text
    assert set(tagged(admin_page, "data-agent")) == {"alice", "bob", "carol"}
    assert sup.get("/queues/nope").status_code == 404


def test_team_pages(client_as: ClientAs, engine: Engine, web_app_settings: Settings) -> None:
    first, last = last_30_days(web_app_settings)
    teams = build_report(engine, web_app_settings, ReportQuery(by="team", date_from=first, date_to=last))
    nord = next(r for r in teams.rows if r.group == "nord")
    assert tagged(client_as("admin").get("/teams").text, "data-group") == [r.group for r in teams.rows]
    sup = client_as("sup")
    assert tagged(sup.get("/teams").text, "data-group") == ["nord"]
    page = sup.get("/teams/nord").text
    assert f"{nord.csat_pct:.1f} %" in page and f"n = {nord.responses}" in page
    assert tagged(page, "data-agent") == ["alice", "bob"]
    assert 'href="/export/report.csv?by=agent&amp;from=' in page and "team=nord" in page
    assert client_as("admin").get("/teams/nowhere").status_code == 404


# -- exports ------------------------------------------------------------------------------------------


def test_exports_are_the_cli_files_cut_to_what_the_viewer_may_see(
    client_as: ClientAs, engine: Engine, web_app_settings: Settings
) -> None:
    first, last = last_30_days(web_app_settings)
    span = f"from={first.isoformat()}&to={last.isoformat()}"
    admin = client_as("admin")
    csv_all = admin.get(f"/export/report.csv?by=agent&{span}")
    assert csv_all.status_code == 200 and csv_all.headers["content-type"].startswith("text/csv")
    assert csv_all.headers["content-disposition"] == (
        f'attachment; filename="csat-agent-{first.isoformat()}-{last.isoformat()}.csv"'
    )
    query = ReportQuery(by="agent", date_from=first, date_to=last)
    assert csv_all.content == exports.render(engine, web_app_settings, query, "csv")

    lines = client_as("sup").get(f"/export/report.csv?by=agent&{span}").text.splitlines()
    assert lines[0] == ",".join(exports.CSV_COLUMNS)
    groups = [line.split(",")[1] for line in lines[1:]]
    assert groups == ["alice", "bob", "(all)"]
    total = lines[-1].split(",")
    assert total[exports.CSV_COLUMNS.index("responses")] == "14"  # alice 8 + bob 6, not the centre

    teams = client_as("trainer").get(f"/export/report.csv?by=team&{span}").text.splitlines()
    assert [line.split(",")[1] for line in teams[1:]] == ["sued", "(all)"]

    xlsx = client_as("sup").get(f"/export/report.xlsx?by=agent&{span}")
    book = load_workbook(io.BytesIO(xlsx.content))
    cells = {str(c.value) for ws in book.worksheets for row in ws.iter_rows() for c in row if c.value}
    assert "alice" in cells and "carol" not in cells and "sued" not in cells
    assert "support" in cells  # the queue sheet is centre-wide

    pdf = admin.get(f"/export/report.pdf?by=queue&{span}")
    assert pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"
    assert client_as("alice").get(f"/export/report.csv?{span}").status_code == 403
    assert client_as("sup").get(f"/export/report.csv?team=sued&{span}").status_code == 403


def test_agent_report_pdf_for_the_agent_and_their_supervisor_only(client_as: ClientAs) -> None:
    own = client_as("alice").get("/export/agent-report/alice.pdf")
    assert own.status_code == 200 and own.content.startswith(b"%PDF")
    assert own.headers["content-disposition"].startswith('attachment; filename="csat-agent-alice-')
    assert client_as("alice").get("/export/agent-report/bob.pdf").status_code == 403
    assert client_as("sup").get("/export/agent-report/bob.pdf").status_code == 200
    assert client_as("sup").get("/export/agent-report/carol.pdf").status_code == 403
    probe = client_as("admin").get("/export/agent-report/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E.pdf")
    assert (
        probe.status_code == 200
        and '"csat-agent-script_alert__x____script-' in (probe.headers["content-disposition"])
    )


# -- admin --------------------------------------------------------------------------------------------


def test_admin_adds_users_with_the_form_and_csrf_token(client_as: ClientAs, engine: Engine) -> None:
    admin = client_as("admin")
    page = admin.get("/admin/users")
    assert tagged(page.text, "data-user") == ["admin", "alice", "sup", "trainer"]
    token = csrf_of(page.text)

    form = {"name": "dora", "role": "trainer", "password": "dora-password", "teams": "nord, sued"}
    refused = admin.post("/admin/users", data=form, follow_redirects=False)
    assert refused.status_code == 403
    with engine.connect() as conn:
        assert conn.execute(select(User.name).where(User.name == "dora")).first() is None

    added = admin.post("/admin/users", data={**form, "csrf_token": token}, follow_redirects=False)
    assert added.status_code == 303
    listing = admin.get(added.headers["location"]).text
    assert "Added user dora." in listing
    assert "nord, sued" in row_html(listing, "data-user", "dora")
    dora = login(TestClient(admin.app, base_url="http://127.0.0.1"), "dora", "dora-password")
    assert tagged(dora.get("/leaderboard").text, "data-agent") == ["alice", "bob", "carol"]

    bad = admin.post(
        "/admin/users",
        data={"name": "<b>eve</b>", "role": "supervisor", "password": "eve-password", "csrf_token": token},
    )
    assert bad.status_code == 400 and "give at least one --team" in bad.text
    assert "<b>eve</b>" not in bad.text and "&lt;b&gt;eve&lt;/b&gt;" in bad.text
    assert client_as("sup").post("/admin/users", data={**form, "csrf_token": "x"}).status_code == 403


def test_settings_page_hides_secrets(engine: Engine, tmp_path: Path) -> None:
    secrets = {
        "hash_secret": "hash-TOPSECRET-1",
        "ami": {"secret": "ami-TOPSECRET-2"},
        "web": {"secret_key": "web-TOPSECRET-3"},
        "smtp": {"password": "smtp-TOPSECRET-4", "username": "mailer"},
        "database_url": "postgresql://csat:db-TOPSECRET-5@127.0.0.1:5432/csat",
        "alerts": {"webhook_url": "https://hooks.example.org/services/T0/B0/hook-TOPSECRET-6"},
    }
    settings = web_settings(data_dir=tmp_path, **secrets)
    seed_users(engine)
    with TestClient(create_app(settings, engine), base_url="http://127.0.0.1") as client:
        page = login(client, "admin").get("/admin/settings")
    assert page.status_code == 200
    assert "TOPSECRET" not in page.text
    assert "ami.secret" in page.text and "hidden" in page.text
    assert "postgresql+psycopg2://csat:***@127.0.0.1:5432/csat" in page.text
    assert "hooks.example.org" in page.text and "mailer" in page.text and "Europe/Berlin" in page.text


# -- pure helpers -------------------------------------------------------------------------------------


def test_ranges_presets_and_clamping() -> None:
    today = date(2026, 3, 15)
    assert pd.pick_range(None, None, None, today, "7d") == pd.DateRange(date(2026, 3, 9), today, "7d")
    assert pd.pick_range("last_month", "2020-01-01", None, today, "7d") == pd.DateRange(
        date(2026, 2, 1), date(2026, 2, 28), "last_month"
    )
    assert pd.pick_range("this_month", None, None, today, "7d").first == date(2026, 3, 1)
    future = pd.pick_range(None, "2026-03-01", "2099-01-01", today, "7d")
    assert (future.first, future.last, future.key) == (date(2026, 3, 1), today, "custom")
    with pytest.raises(pd.BadQuery, match="after"):
        pd.pick_range("custom", "2026-03-20", None, today, "7d")
    with pytest.raises(pd.BadQuery, match="must be a date"):
        pd.pick_range(None, "15.3.2026", None, today, "7d")


def test_figures_and_bars_as_printed() -> None:
    assert pd.shown(71.43, 45.35, 88.28, 14, "pct") == pd.Shown("71.4 %", "45.4–88.3 %", 14, False)
    assert pd.shown(None, None, None, 3, "pct").text == "insufficient data"
    assert pd.shown(None, None, None, 0, "pct").text == "—"
    assert pd.shown(-23.8, -53.5, 11.8, 21, "nps").text == "\u221224"
    assert pd.shown(-23.8, -53.5, 11.8, 21, "nps").interval == "\u221254 to +12"
    assert pd.shown(0.2, -5.0, 6.0, 9, "nps").text == "0"
    bar = pd.bar_for(87.5, 52.91, 97.76, 80.0, "good")
    assert bar == pd.Bar(87.5, 52.91, 44.85, 80.0, "good")
    assert pd.bar_for(None, None, None, 80.0, None) is None
    assert pd.file_name("csat-agent", '<script>alert("x")</script>', "2026-01-01") == (
        "csat-agent-script_alert__x____script-2026-01-01"
    )
