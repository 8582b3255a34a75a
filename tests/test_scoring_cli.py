"""``csat report`` and friends, end to end through the CLI on SQLite and PostgreSQL.

The data is the seeds' worked example (30 callers rate 4 and 50 rate 5 out of 112 → CSAT 71) for one
agent and five answers for another, so every figure in the output can be checked by hand.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from ivr.cli import app
from ivr.models import Answer, Call, SurveyState

runner = CliRunner()
REQUIRED_FIELDS = {
    "group",
    "responses",
    "csat_pct",
    "csat_pct_low",
    "csat_pct_high",
    "csat_mean",
    "nps",
    "nps_low",
    "nps_high",
    "ces_mean",
    "fcr_pct",
    "offered",
    "completed",
    "reach_pct",
    "rank",
    "flag",
}


def _call(uid: str, agent: str, queue: str, at: datetime) -> dict[str, object]:
    return {
        "uniqueid": uid,
        "linkedid": uid,
        "queue": queue,
        "agent": agent,
        "connected_at": at,
        "offer": True,
        "survey_state": SurveyState.COMPLETED.value,
        "answers_count": 0,
        "updated_at": at,
    }


def _answer(
    uid: str, agent: str, queue: str, key: str, qtype: str, value: int, at: datetime
) -> dict[str, object]:
    return {
        "call_uniqueid": uid,
        "linkedid": uid,
        "queue": queue,
        "agent": agent,
        "survey": "default",
        "question": key,
        "question_type": qtype,
        "position": 1 if key == "csat" else 2,
        "value": value,
        "tries": 1,
        "answered_at": at,
    }


@pytest.fixture
def seeded(engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CSAT_CONFIG", raising=False)
    monkeypatch.setenv("CSAT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CSAT_DATABASE_URL", db_url)
    at = (datetime.now(UTC) - timedelta(days=2)).replace(tzinfo=None, hour=12)
    ratings = [4] * 30 + [5] * 50 + [3] * 12 + [2] * 10 + [1] * 10  # 112 answers, 80 of them 4–5
    calls, answers = [], []
    for i, value in enumerate(ratings):
        uid, when = f"100{i}.1", at + timedelta(seconds=i)
        calls.append(_call(uid, "alice", "support", at))
        answers.append(_answer(uid, "alice", "support", "csat", "csat", value, when))
        answers.append(_answer(uid, "alice", "support", "fcr", "yesno", 1 if i % 4 else 0, when))
    for i in range(5):
        calls.append(_call(f"200{i}.1", "bob", "sales", at))
        answers.append(_answer(f"200{i}.1", "bob", "sales", "csat", "csat", 5, at))
    with engine.begin() as conn:
        conn.execute(insert(Call), calls)
        conn.execute(insert(Answer), answers)
    return engine


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_report_json_has_the_figures_a_trainer_needs(seeded: Engine) -> None:
    code, out, err = _run("report", "--by", "agent", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    rows = {r["group"]: r for r in doc["rows"]}
    assert set(rows) == {"alice", "bob"}
    assert set(rows["alice"]) >= REQUIRED_FIELDS
    alice, bob = rows["alice"], rows["bob"]
    assert (alice["responses"], alice["csat_pct"], alice["csat_pct_low"], alice["csat_pct_high"]) == (
        112,
        71.43,
        62.46,
        78.98,
    )
    assert alice["fcr_pct"] == 75.0  # every fourth caller said "no"
    assert (alice["offered"], alice["completed"], alice["reach_pct"]) == (112, 112, 100.0)
    assert (alice["rank"], alice["flag"], alice["band"]) == (1, "below_target", "fair")
    assert alice["nps"] is None and alice["ces_mean"] is None  # no such questions: null, not 0
    # Five answers are below the minimum of 10: no number, no rank.
    assert (bob["responses"], bob["csat_pct"], bob["rank"], bob["flag"]) == (
        5,
        None,
        None,
        "insufficient_data",
    )
    assert doc["totals"][0]["group"] == "(all)" and doc["totals"][0]["responses"] == 117


def test_report_csv_and_table(seeded: Engine, tmp_path: Path) -> None:
    code, _, err = _run("report", "--format", "csv", "-o", str(tmp_path / "r.csv"))
    assert code == 0, err
    lines = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert [(r["group"], r["csat_pct"], r["flag"]) for r in lines] == [
        ("alice", "71.43", "below_target"),
        ("bob", "", "insufficient_data"),
        ("(all)", "72.65", "below_target"),
    ]
    code, out, _ = _run("report", "--by", "queue")
    assert code == 0
    assert "71.4 [62, 79]" in out and "insufficient data" in out and "support" in out


def test_report_period_and_question_filter(seeded: Engine) -> None:
    code, out, _ = _run("report", "--by", "queue", "--period", "month", "--question", "fcr", "-f", "json")
    assert code == 0
    rows = json.loads(out)["rows"]
    support = next(r for r in rows if r["group"] == "support")
    assert support["period"] == (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m")
    assert (support["csat_pct"], support["fcr_pct"], support["responses"]) == (None, 75.0, 112)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--by", "colour"], "--by must be one of agent, queue, team, question"),
        (["report", "--from", "2026-02-30"], "--from '2026-02-30' is not a date"),
        (["report", "--from", "2026-05-02", "--to", "2026-05-01"], "is before --from"),
        (["report", "--format", "xlsx"], "--format xlsx writes a file: give -o FILE"),
        (["agent-report", "nobody", "-o", "x.pdf"], "unknown agent 'nobody'"),
        (["export", "run", "nightly"], "no export named 'nightly'"),
    ],
)
def test_bad_input_gets_one_clear_line(seeded: Engine, args: list[str], message: str) -> None:
    code, _, err = _run(*args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_rollups_rebuild_and_refresh(seeded: Engine) -> None:
    code, out, _ = _run("rollups", "rebuild")
    assert code == 0 and "rollups rebuilt: 2 day(s) in time zone UTC" in out  # the answers' day and the next
    code, out, _ = _run("rollups", "refresh")
    assert code == 0 and "rollups refreshed:" in out


def test_a_database_that_is_down_is_named_not_dumped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CSAT_CONFIG", raising=False)
    monkeypatch.setenv("CSAT_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nothing")
    code, _, err = _run("report")
    assert code == 1
    assert "the database is unreachable or not set up" in err and "Traceback" not in err


def test_a_bare_postgresql_url_uses_the_shipped_driver() -> None:
    from ivr.settings import Settings

    assert Settings(database_url="postgresql://u@127.0.0.1/csat").database_url == (
        "postgresql+psycopg2://u@127.0.0.1/csat"
    )


def test_csat_check_names_an_export_with_a_bad_cron() -> None:
    from ivr.check import _check_exports
    from ivr.settings import Settings

    bad = Settings(exports=[{"name": "weekly", "cron": "61 * * * *", "folder": "/tmp/x"}])  # type: ignore[list-item]
    result = _check_exports(bad)
    assert not result.ok and "export 'weekly'" in result.message and "61 * * * *" in result.message
    assert _check_exports(Settings()).ok
