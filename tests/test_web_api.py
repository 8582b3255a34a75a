"""The JSON API, /metrics and the live feed, on SQLite and PostgreSQL.

Fixtures come from ``tests/web_support.py``: admin; sup (supervisor of nord: alice, bob); trainer (of
sued: carol); alice (agent role). 21 seeded completed calls: alice 8, bob 6, carol 6, an agent whose
name is an XSS probe 1; three answers each, plus a voice comment for every rating of 1 (alice 1, carol 2).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from ivr import metrics as ivr_metrics
from ivr.fastagi_server import FastAgiServer
from ivr.models import Alert, Answer, Call, SurveyState, utcnow
from ivr.offers import OfferService
from ivr.settings import Settings
from ivr.spool import Spool
from ivr.store import CallStore
from ivr.survey_leg import SurveyLeg
from scoring.exports import report_as_json
from scoring.report import ReportRow, build_report, default_range
from scoring.tallies import ReportQuery
from scoring.web import live
from scoring.web.api import ReportRowOut
from scoring.web.app import create_app
from scoring.web.deps import RuntimeStatus
from scoring.web.users import create_token
from tests.web_support import XSS_AGENT, login, web_settings

ALL_AGENTS = {"alice", "bob", "carol", XSS_AGENT}
CALLS = {"alice": 8, "bob": 6, "carol": 6, XSS_AGENT: 1}
COMMENTS = {"alice": 1, "bob": 0, "carol": 2, XSS_AGENT: 0}


@pytest.fixture
def web_app_settings() -> Settings:
    """A fast live feed, so the streaming tests take a fraction of a second."""
    return web_settings(web={"secret_key": "test-secret-key", "live_poll_s": 0.05})


def bearer(engine: Engine, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(engine, user, 'tests')}"}


def _without_generated_at(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "generated_at"}


# -- reports ----------------------------------------------------------------------------------------


def test_report_model_has_every_field_of_a_report_row() -> None:
    assert set(ReportRowOut.model_fields) == {f.name for f in dataclasses.fields(ReportRow)}


@pytest.mark.parametrize(
    "by, period", [("agent", None), ("queue", "week"), ("team", None), ("question", "day")]
)
def test_admin_report_is_the_cli_json_document(
    web_client: TestClient, engine: Engine, web_app_settings: Settings, by: str, period: str | None
) -> None:
    params = {"by": by} | ({"period": period} if period else {})
    response = web_client.get("/api/v1/reports", params=params, headers=bearer(engine, "admin"))
    assert response.status_code == 200, response.text
    api = response.json()
    first, last = default_range(web_app_settings)
    expected = report_as_json(
        build_report(
            engine, web_app_settings, ReportQuery(by=by, date_from=first, date_to=last, period=period)
        )  # type: ignore[arg-type]
    )
    assert _without_generated_at(api) == _without_generated_at(expected)
    assert api["rows"], "the seeded calls give rows"
    generated = datetime.fromisoformat(api["generated_at"])
    assert api["generated_at"].endswith("Z") and abs(generated.timestamp() - time.time()) < 60


def test_admin_report_matches_the_csat_report_command(
    web_client: TestClient, engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ivr.cli import app as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CSAT_CONFIG", raising=False)
    for key, value in {
        "CSAT_DATA_DIR": str(tmp_path / "data"),
        "CSAT_DATABASE_URL": db_url,
        "CSAT_TIMEZONE": "Europe/Berlin",
        "CSAT_SCORING__MIN_RESPONSES": "5",
        "CSAT_TEAMS": json.dumps({"nord": ["alice", "bob"], "sued": ["carol"]}),
    }.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["report", "--by", "team", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    api = web_client.get("/api/v1/reports?by=team", headers=bearer(engine, "admin")).json()
    assert _without_generated_at(api) == _without_generated_at(json.loads(result.stdout))


def _groups(client: TestClient, by: str = "agent") -> set[str]:
    response = client.get("/api/v1/reports", params={"by": by})
    assert response.status_code == 200, response.text
    return {r["group"] for r in response.json()["rows"]}


def test_report_rows_are_limited_to_what_each_role_may_see(client_as: Any) -> None:
    admin, sup, trainer = client_as("admin"), client_as("sup"), client_as("trainer")
    assert _groups(admin) == ALL_AGENTS
    assert _groups(sup) == {"alice", "bob"}
    assert _groups(trainer) == {"carol"}
    assert _groups(admin, "team") == {"nord", "sued", "(no team)"}
    assert _groups(sup, "team") == {"nord"}
    assert _groups(trainer, "team") == {"sued"}
    # Queues and questions are centre-wide views, open to supervisors and trainers.
    assert _groups(sup, "queue") == {"sales", "support"}
    assert _groups(trainer, "question") == {"csat", "fcr", "nps", "comment"}
    # Centre-wide totals stay: they are what a team is compared against.
    assert sup.get("/api/v1/reports").json()["totals"][0]["responses"] == sum(CALLS.values())


def test_the_agent_role_sees_only_its_own_row(client_as: Any) -> None:
    alice = client_as("alice")
    doc = alice.get("/api/v1/reports?by=agent").json()
    assert [r["group"] for r in doc["rows"]] == ["alice"] and doc["totals"] == []
    for by in ("queue", "question", "team"):
        response = alice.get(f"/api/v1/reports?by={by}")
        assert response.status_code == 403, by
        assert "own scores" in response.json()["detail"]


def test_report_filters_and_days_to_come(client_as: Any, engine: Engine, web_app_settings: Settings) -> None:
    admin = client_as("admin")
    # Days still to come are not read (they cost queries and hold nothing): the document is the same.
    first, last = date.today() - timedelta(days=20), date.today() + timedelta(days=40)
    ahead = admin.get(f"/api/v1/reports?by=agent&period=week&from={first}&to={last}").json()
    query = ReportQuery(by="agent", period="week", date_from=first, date_to=last)
    assert _without_generated_at(ahead) == _without_generated_at(
        report_as_json(build_report(engine, web_app_settings, query))
    )
    assert ahead["to"] == last.isoformat() and ahead["rows"]
    doc = admin.get("/api/v1/reports", params={"by": "agent", "queue": "sales", "question": "csat"}).json()
    assert (doc["queue"], doc["question"]) == ("sales", "csat")
    assert sum(r["responses"] for r in doc["rows"]) == 8  # calls 1, 4, 7 of each agent were in sales
    far = admin.get("/api/v1/reports", params={"from": "2001-01-01", "to": "2001-01-31"}).json()
    assert (far["from"], far["to"], far["rows"]) == ("2001-01-01", "2001-01-31", [])


# -- agents -----------------------------------------------------------------------------------------


def test_agent_list_is_filtered_and_has_last_30_days_figures(client_as: Any) -> None:
    admin, sup, alice = client_as("admin"), client_as("sup"), client_as("alice")
    everyone = admin.get("/api/v1/agents").json()
    assert {a["name"] for a in everyone["agents"]} == ALL_AGENTS
    by_name = {a["name"]: a for a in everyone["agents"]}
    assert (by_name["alice"]["team"], by_name["alice"]["responses"]) == ("nord", 8)
    assert by_name["alice"]["csat_pct"] == 87.5  # 7 of 8 rated 4 or 5
    assert by_name[XSS_AGENT]["team"] is None and by_name[XSS_AGENT]["csat_pct"] is None  # 1 < 5 answers
    assert {a["name"] for a in sup.get("/api/v1/agents").json()["agents"]} == {"alice", "bob"}
    assert [a["name"] for a in alice.get("/api/v1/agents").json()["agents"]] == ["alice"]
    assert date.fromisoformat(everyone["to"]) - date.fromisoformat(everyone["from"]) == timedelta(days=29)


def test_one_agent_403_where_not_visible_404_where_unknown(client_as: Any) -> None:
    admin, sup, trainer, alice = (client_as(n) for n in ("admin", "sup", "trainer", "alice"))
    own = alice.get("/api/v1/agents/alice")
    assert own.status_code == 200
    body = own.json()
    assert (body["name"], body["team"], body["figures"]["responses"]) == ("alice", "nord", 8)
    assert {q["group"] for q in body["by_queue"]} == {"sales", "support"}
    assert sum(q["responses"] for q in body["by_queue"]) == 8
    assert alice.get("/api/v1/agents/bob").status_code == 403
    assert sup.get("/api/v1/agents/carol").status_code == 403
    assert trainer.get("/api/v1/agents/bob").status_code == 403
    assert trainer.get("/api/v1/agents/carol").status_code == 200
    # An unknown name is 403 to a supervisor (no existence oracle) and 404 to an admin.
    assert sup.get("/api/v1/agents/nobody").status_code == 403
    assert admin.get("/api/v1/agents/nobody").status_code == 404
    # Names with '/' and markup are addressable and come back as data.
    probe = admin.get(f"/api/v1/agents/{quote(XSS_AGENT, safe='')}")
    assert probe.status_code == 200 and probe.json()["name"] == XSS_AGENT
    assert probe.headers["content-type"] == "application/json"


# -- calls and answers ------------------------------------------------------------------------------


def _all_pages(client: TestClient, path: str, limit: int, **params: str) -> tuple[int, list[dict[str, Any]]]:
    items: list[dict[str, Any]] = []
    offset, total = 0, None
    while total is None or offset < total:
        response = client.get(path, params={"limit": limit, "offset": offset, **params})
        assert response.status_code == 200, response.text
        page = response.json()
        assert (page["limit"], page["offset"]) == (limit, offset)
        assert len(page["items"]) <= limit
        total = page["total"]
        items += page["items"]
        offset += limit
    return total, items


def test_calls_are_paged_newest_first_and_filtered_by_role(client_as: Any) -> None:
    admin, sup, alice = client_as("admin"), client_as("sup"), client_as("alice")
    total, calls = _all_pages(admin, "/api/v1/calls", 4)
    assert total == len(calls) == 21 and len({c["uniqueid"] for c in calls}) == 21
    times = [c["connected_at"] for c in calls]
    assert times == sorted(times, reverse=True) and all(t.endswith("Z") for t in times)
    assert "caller_hash" not in calls[0]
    total, calls = _all_pages(sup, "/api/v1/calls", 5)
    assert total == 14 and {c["agent"] for c in calls} == {"alice", "bob"}
    assert {c["agent"] for c in _all_pages(alice, "/api/v1/calls", 1000)[1]} == {"alice"}
    assert sup.get("/api/v1/calls?agent=bob").json()["total"] == 6
    assert sup.get("/api/v1/calls?agent=carol").status_code == 403
    assert alice.get("/api/v1/calls?agent=bob").status_code == 403
    assert admin.get("/api/v1/calls?queue=sales&state=completed").json()["total"] == 8
    assert admin.get("/api/v1/calls?state=partial").json()["total"] == 0
    assert admin.get("/api/v1/calls?from=2001-01-01&to=2001-12-31").json() == {
        "total": 0,
        "limit": 100,
        "offset": 0,
        "items": [],
    }
    # The past days' range: the calls of the last 20 days are all in the last 30.
    first = (date.today() - timedelta(days=30)).isoformat()
    assert admin.get(f"/api/v1/calls?from={first}").json()["total"] == 21


def test_answers_are_paged_and_filtered_by_role(client_as: Any) -> None:
    admin, sup, alice = client_as("admin"), client_as("sup"), client_as("alice")
    expected = {a: 3 * n + COMMENTS[a] for a, n in CALLS.items()}
    total, answers = _all_pages(admin, "/api/v1/answers", 7)
    assert total == len(answers) == sum(expected.values())
    assert len({a["id"] for a in answers}) == total
    assert [a["answered_at"] for a in answers] == sorted((a["answered_at"] for a in answers), reverse=True)
    total, answers = _all_pages(sup, "/api/v1/answers", 10)
    assert total == expected["alice"] + expected["bob"] and {a["agent"] for a in answers} == {"alice", "bob"}
    own = _all_pages(alice, "/api/v1/answers", 1000)[1]
    assert {a["agent"] for a in own} == {"alice"} and len(own) == expected["alice"]
    comments = admin.get("/api/v1/answers?question_type=comment").json()["items"]
    assert len(comments) == 3 and all(c["value"] is None and c["has_recording"] for c in comments)
    assert not any(a["has_recording"] for a in own if a["question_type"] != "comment")
    one_call = own[0]["uniqueid"]
    of_call = alice.get("/api/v1/answers", params={"call": one_call}).json()["items"]
    assert {a["uniqueid"] for a in of_call} == {one_call} and len(of_call) in (3, 4)
    assert sup.get("/api/v1/answers?agent=carol").status_code == 403


BAD_PARAMETERS = [
    "/api/v1/reports?by=month",
    "/api/v1/reports?period=year",
    "/api/v1/reports?from=2026-13-01",
    "/api/v1/reports?from=yesterday",
    "/api/v1/reports?from=2026-02-01&to=2026-01-31",
    "/api/v1/reports?from=1999-12-31",
    "/api/v1/reports?to=2100-01-01",
    "/api/v1/reports?from=2020-01-01&to=2026-01-01",
    "/api/v1/reports?queue=a%00b",
    "/api/v1/reports?question=" + "q" * 65,
    "/api/v1/calls?limit=0",
    "/api/v1/calls?limit=1001",
    "/api/v1/calls?offset=-1",
    "/api/v1/calls?offset=99999999999999999999999",
    "/api/v1/calls?state=lost",
    "/api/v1/answers?question_type=stars",
    "/api/v1/answers?agent=",
    "/api/v1/agents?from=2026-01-02&to=2026-01-01",
]


def test_bad_parameters_are_422_not_500(web_client: TestClient, engine: Engine) -> None:
    admin = bearer(engine, "admin")
    for path in BAD_PARAMETERS:
        response = web_client.get(path, headers=admin)
        assert response.status_code == 422, (path, response.text)
        assert isinstance(response.json()["detail"], list), path


def test_tokens_work_and_anonymous_or_wrong_tokens_get_401(web_client: TestClient, engine: Engine) -> None:
    alice = bearer(engine, "alice")
    assert web_client.get("/api/v1/agents/alice", headers=alice).status_code == 200
    assert web_client.get("/api/v1/agents/bob", headers=alice).status_code == 403
    assert web_client.get("/api/v1/reports?by=queue", headers=alice).status_code == 403
    for path in ("/api/v1/reports", "/api/v1/agents", "/api/v1/calls", "/api/v1/answers"):
        assert web_client.get(path).status_code == 401, path
        assert web_client.get(path, headers={"Authorization": "Bearer csat_nope"}).status_code == 401


def test_the_openapi_document_describes_the_api(web_client: TestClient) -> None:
    spec = web_client.get("/api/openapi.json").json()
    assert {"/api/v1/reports", "/api/v1/agents", "/api/v1/calls", "/api/v1/answers"} <= set(spec["paths"])
    assert "/metrics" not in spec["paths"] and "/live/events" not in spec["paths"]
    report = spec["paths"]["/api/v1/reports"]["get"]
    assert {"401", "403", "422"} <= set(report["responses"])
    assert report["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ReportOut")
    assert "from" in spec["components"]["schemas"]["ReportOut"]["properties"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert web_client.get("/api/docs").status_code == 200


# -- /metrics ---------------------------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _loopback(app: Any, host: str = "127.0.0.1") -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1", client=(host, 50000))


def test_metrics_from_loopback_without_login(web_client: TestClient, engine: Engine) -> None:
    app = web_client.app
    app.state.ctx.runtime = RuntimeStatus(ami_connected=lambda: True)  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            insert(Call),
            [
                {"uniqueid": f"9.{i}", "linkedid": f"9.{i}", "survey_state": state, "updated_at": utcnow()}
                for i, state in enumerate(("partial", "not_offered", "started"), start=1)
            ],
        )
        alert = {
            "answer_id": 1,
            "call_uniqueid": "9.1",
            "linkedid": "9.1",
            "question": "csat",
            "question_type": "csat",
            "reason": "low_csat",
            "state": "open",
            "answered_at": utcnow(),
            "created_at": utcnow(),
            "updated_at": utcnow(),
        }  # every row with every key: an executemany takes its columns from the first row
        conn.execute(
            insert(Alert),
            [alert, {**alert, "answer_id": 2, "question": "nps", "state": "closed"}],
        )
    ivr_metrics.DEAD_AIR.observe(0.03)  # the registry is the process's: compare with itself, not with 0
    for host in ("127.0.0.1", "::1", "127.0.0.2"):
        with _loopback(app, host) as local:
            response = local.get("/metrics")
        assert response.status_code == 200, host
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = _samples(response.text)
    total = sum(CALLS.values())
    assert got[("csat_database_up", ())] == 1
    assert got[("csat_calls", (("survey_state", "completed"),))] == total
    assert got[("csat_calls", (("survey_state", "no_input"),))] == 0
    assert got[("csat_calls", (("survey_state", "started"),))] == 1
    assert got[("csat_surveys_offered_total", ())] == total + 2  # not_offered is not counted
    assert got[("csat_surveys_completed_total", ())] == total
    assert got[("csat_surveys_partial_total", ())] == 1
    assert got[("csat_surveys_no_input_total", ())] == 0
    assert got[("csat_answers_stored_total", ())] == sum(3 * n + COMMENTS[a] for a, n in CALLS.items())
    assert got[("csat_open_alerts", ())] == 1
    assert got[("csat_ami_connected", ())] == 1
    count = ivr_metrics.REGISTRY.get_sample_value("csat_survey_dead_air_seconds_count")
    assert count is not None and got[("csat_survey_dead_air_seconds_count", ())] == count >= 1
    buckets = {dict(k[1])["le"] for k in got if k[0] == "csat_survey_dead_air_seconds_bucket"}
    assert {"0.01", "0.05", "0.5", "2.0", "+Inf"} <= buckets
    app.state.ctx.runtime = RuntimeStatus()  # type: ignore[attr-defined]
    with _loopback(app) as local:
        assert _samples(local.get("/metrics").text)[("csat_ami_connected", ())] == 0


def _signed_in(app: Any, name: str) -> TestClient:
    return login(TestClient(app, base_url="http://127.0.0.1"), name)


def test_metrics_elsewhere_need_an_admin(web_client: TestClient, engine: Engine) -> None:
    """The TestClient's own client host is "testclient": not loopback."""
    anonymous = web_client.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    for name in ("sup", "trainer", "alice"):
        assert _signed_in(web_client.app, name).get("/metrics").status_code == 403, name
        assert web_client.get("/metrics", headers=bearer(engine, name)).status_code == 403, name
    assert _signed_in(web_client.app, "admin").get("/metrics").status_code == 200
    assert web_client.get("/metrics", headers=bearer(engine, "admin")).status_code == 200
    # Through a proxy on this host the connection is local but the client is not.
    with _loopback(web_client.app) as local:
        assert local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 401
        assert local.get("/metrics", headers={"Forwarded": "for=203.0.113.9"}).status_code == 401


def test_metrics_say_when_the_database_is_down(web_app_settings: Settings) -> None:
    from sqlalchemy import create_engine

    broken = create_engine("sqlite:////nonexistent-dir/csat.sqlite3")
    with _loopback(create_app(web_app_settings, broken)) as local:
        response = local.get("/metrics")
    assert response.status_code == 200
    got = _samples(response.text)
    assert got[("csat_database_up", ())] == 0 and ("csat_ami_connected", ()) in got
    assert not any(name.startswith("csat_surveys") for name, _ in got)


def test_dead_air_is_observed_when_the_first_prompt_is_sent(engine: Engine, tmp_path: Path) -> None:
    """A FastAGI request through the real server: the histogram counts it once the first GET DATA is out."""
    settings = web_settings(data_dir=tmp_path)
    store = CallStore(engine, Spool(tmp_path / "spool"))
    server = FastAgiServer("127.0.0.1", 0, SurveyLeg(settings, store, OfferService(settings, store)))
    server.start()
    before = ivr_metrics.REGISTRY.get_sample_value("csat_survey_dead_air_seconds_count") or 0
    env = {
        "agi_network": "yes",
        "agi_uniqueid": "1800000000.1",
        "agi_callerid": "5550100",
        "agi_arg_1": "1800000000.1",
        "agi_arg_2": "support",
        "agi_arg_3": "alice",
        "agi_arg_4": "PJSIP/alice",
    }
    try:
        with socket.create_connection(server.server_address[:2], timeout=10) as asterisk:
            asterisk.sendall("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
            first_command = asterisk.makefile("r").readline()
            assert first_command.startswith("GET DATA "), first_command
            # The caller hangs up at once: the survey ends without answers.
        deadline = time.monotonic() + 10
        while store_state(engine, "1800000000.1") == SurveyState.STARTED and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        server.stop()
    after = ivr_metrics.REGISTRY.get_sample_value("csat_survey_dead_air_seconds_count")
    assert after == before + 1
    assert store_state(engine, "1800000000.1") == SurveyState.NO_INPUT


def store_state(engine: Engine, uniqueid: str) -> str | None:
    from sqlalchemy import select

    with engine.connect() as conn:
        return conn.execute(select(Call.survey_state).where(Call.uniqueid == uniqueid)).scalar()


# -- live feed --------------------------------------------------------------------------------------


def add_ended_survey(
    engine: Engine,
    uniqueid: str,
    agent: str,
    answers: dict[str, int | None],
    *,
    state: SurveyState = SurveyState.COMPLETED,
    ended_at: datetime | None = None,
) -> None:
    ended_at = ended_at or utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(Call).values(
                uniqueid=uniqueid,
                linkedid=uniqueid,
                queue="support",
                agent=agent,
                connected_at=ended_at - timedelta(minutes=4),
                offer=True,
                survey_state=state.value,
                survey_started_at=ended_at - timedelta(seconds=40),
                survey_ended_at=ended_at,
                answers_count=len(answers),
                updated_at=ended_at,
            )
        )
        conn.execute(
            insert(Answer),
            [
                {
                    "call_uniqueid": uniqueid,
                    "linkedid": uniqueid,
                    "queue": "support",
                    "agent": agent,
                    "survey": "default",
                    "question": question,
                    "question_type": "comment" if value is None else question,
                    "position": position,
                    "value": value,
                    "answered_at": ended_at - timedelta(seconds=5),
                }
                for position, (question, value) in enumerate(answers.items(), start=1)
            ],
        )


def read_events(response: Any) -> Iterator[dict[str, Any]]:
    """Parsed ``survey`` events (with their ``id``) of an SSE response, until the stream ends."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if line.startswith("id: "):
            event["id"] = line[4:]
        elif line.startswith("data: "):
            event["data"] = json.loads(line[6:])
        elif line == "" and "data" in event:
            yield event
            event = {}


def test_live_feed_sends_a_survey_that_ends_after_connecting(client_as: Any, engine: Engine) -> None:
    sup = client_as("sup")
    with sup.stream("GET", "/live/events?max_events=1&max_seconds=20") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        add_ended_survey(engine, "1900000000.1", "carol", {"csat": 1})  # not sup's team
        add_ended_survey(engine, "1900000000.2", "bob", {"csat": 5, "fcr": 1, "nps": 9})
        events = list(read_events(response))
    assert len(events) == 1
    data = events[0]["data"]
    assert (data["agent"], data["queue"], data["state"]) == ("bob", "support", "completed")
    assert data["answers"] == {"csat": 5, "fcr": 1, "nps": 9}
    assert data["uniqueid"] == "1900000000.2" and data["time"].endswith("Z")
    assert events[0]["id"].endswith("|1900000000.2")


def test_live_feed_shows_every_visible_survey_and_none_from_before(client_as: Any, engine: Engine) -> None:
    admin, trainer = client_as("admin"), client_as("trainer")
    add_ended_survey(engine, "1900000000.0", "alice", {"csat": 4}, ended_at=utcnow() - timedelta(seconds=2))
    with admin.stream("GET", "/live/events?max_events=3&max_seconds=20") as response:
        add_ended_survey(engine, "1900000000.3", "carol", {"csat": 2, "comment": None})
        add_ended_survey(engine, "1900000000.4", "bob", {"csat": 5}, state=SurveyState.PARTIAL)
        add_ended_survey(engine, "1900000000.5", XSS_AGENT, {"csat": 3})
        seen = [e["data"] for e in read_events(response)]
    assert [e["uniqueid"] for e in seen] == ["1900000000.3", "1900000000.4", "1900000000.5"]
    assert seen[0]["answers"] == {"csat": 2, "comment": None} and seen[1]["state"] == "partial"
    with trainer.stream("GET", "/live/events?max_seconds=0.5&backlog=10") as response:
        seen = [e["data"]["uniqueid"] for e in read_events(response)]
    assert seen == ["1900000000.3"]  # the backlog: carol's only


def test_live_feed_resumes_after_last_event_id(client_as: Any, engine: Engine) -> None:
    admin = client_as("admin")
    now = utcnow()
    add_ended_survey(engine, "1900000001.1", "alice", {"csat": 4}, ended_at=now - timedelta(seconds=3))
    add_ended_survey(engine, "1900000001.2", "bob", {"csat": 5}, ended_at=now - timedelta(seconds=2))
    resume = f"{(now - timedelta(seconds=3)).isoformat()}|1900000001.1"
    with admin.stream("GET", "/live/events?max_seconds=0.5", headers={"Last-Event-ID": resume}) as response:
        seen = [e["data"]["uniqueid"] for e in read_events(response)]
    assert seen == ["1900000001.2"]
    with admin.stream(
        "GET", "/live/events?max_seconds=0.3", headers={"Last-Event-ID": "garbage|x"}
    ) as response:
        assert list(read_events(response)) == []


def test_live_feed_sends_heartbeats(client_as: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.0)
    with client_as("sup").stream("GET", "/live/events?max_seconds=0.3") as response:
        lines = list(response.iter_lines())
    assert ": keep-alive" in lines and lines[0] == "retry: 3000"


def test_live_page_and_feed_are_not_for_agents(web_client: TestClient) -> None:
    page = _signed_in(web_client.app, "sup").get("/live")
    assert page.status_code == 200
    assert "EventSource" in page.text and "textContent" in page.text and "innerHTML" not in page.text
    alice = _signed_in(web_client.app, "alice")
    assert alice.get("/live").status_code == 403
    assert alice.get("/live/events?max_seconds=0.1").status_code == 403
    assert web_client.get("/live", follow_redirects=False).status_code == 303
    assert web_client.get("/live/events", follow_redirects=False).status_code == 303
