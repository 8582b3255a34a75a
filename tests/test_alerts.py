"""Low-score alerts, on SQLite and PostgreSQL: the rules, the scanner (idempotent, history-safe), the
webhook against a real HTTP server on 127.0.0.1, the race-safe workflow, and who may do what on the
pages and in the API (403s, CSRF, escaped notes, refused input that never reaches the database).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, func, select

from ivr.db import insert_answer
from ivr.models import Alert, AlertEvent, Answer, RollupState, utcnow
from ivr.settings import AlertSettings, Settings
from scoring import alert_store
from scoring.alert_jobs import JOB_ID, add_alert_jobs, scan_and_notify
from scoring.alert_store import (
    WATERMARK_KEY,
    AlertMovedMeanwhile,
    AlertNotFound,
    get_alert,
    list_alerts,
    move,
    read_watermark,
    scan_new_answers,
)
from scoring.alerts import (
    MAX_NOTE,
    TRANSITIONS,
    AlertTransitionError,
    NoteError,
    alert_reason,
    clean_note,
    next_states,
    transition,
)
from scoring.web.users import create_token
from scoring.webhook import post_alert
from tests.web_support import XSS_AGENT, csrf_of, seed_calls, web_settings

ClientAs = Callable[[str], TestClient]

#: Every seeded answer is at most 20 days old: this window sees them all.
ALL_SEEDED = timedelta(days=30)
XSS_NOTE = "<script>alert(1)</script>"


def _seeded_low_answers() -> set[tuple[str, str]]:
    """What the seed plan in tests/web_support.py must raise with the default rules, worked out by
    hand from that plan: csat ≤ 2 and nps (= 2 × rating) ≤ 6, per (agent, rating index)."""
    plan = {
        "alice": [5, 5, 4, 5, 4, 1, 5, 4],
        "bob": [3, 4, 2, 5, 4, 3],
        "carol": [1, 2, 2, 3, 1, 4],
        XSS_AGENT: [2],
    }
    out: set[tuple[str, str]] = set()
    i = 0
    for ratings in plan.values():
        for rating in ratings:
            i += 1
            uid = f"1700{i:04d}.{i}"
            if rating <= 2:
                out.add((uid, "csat"))
            if 2 * rating <= 6:
                out.add((uid, "nps"))
    return out


def _alert_keys(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return {
            (r.call_uniqueid, r.question) for r in conn.execute(select(Alert.call_uniqueid, Alert.question))
        }


def _alert_id(engine: Engine, agent: str, question: str = "csat") -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(Alert.id)
            .where(Alert.agent == agent, Alert.question == question)
            .order_by(Alert.id)
            .limit(1)
        ).scalar_one()


def _state(engine: Engine, alert_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(select(Alert.state).where(Alert.id == alert_id)).scalar_one()


def _events(engine: Engine, alert_id: int) -> list[tuple[str, str, str, str | None]]:
    found = get_alert(engine, alert_id)
    assert found is not None
    return [(e.user, e.from_state, e.to_state, e.note) for e in found.events]


def _answer(uid: str, question: str, qtype: str, value: int | None, **kw: Any) -> dict[str, Any]:
    return {
        "call_uniqueid": uid,
        "linkedid": uid,
        "queue": "support",
        "agent": "alice",
        "survey": "default",
        "question": question,
        "question_type": qtype,
        "position": 1,
        "value": value,
        "tries": 1,
        "answered_at": utcnow(),
        **kw,
    }


# -- the rules (pure) ------------------------------------------------------------------------------

DEFAULT = AlertSettings()


@pytest.mark.parametrize(
    ("qtype", "value", "rules", "expected"),
    [
        ("csat", 1, DEFAULT, "low_csat"),
        ("csat", 2, DEFAULT, "low_csat"),
        ("csat", 3, DEFAULT, None),
        ("csat", 3, AlertSettings(max_csat=3), "low_csat"),
        ("csat", 2, AlertSettings(max_csat=1), None),
        ("ces", 2, DEFAULT, "low_ces"),
        ("ces", 3, DEFAULT, None),
        ("ces", 1, AlertSettings(max_ces=None), None),
        ("nps", 0, DEFAULT, "nps_detractor"),
        ("nps", 6, DEFAULT, "nps_detractor"),
        ("nps", 7, DEFAULT, None),
        ("nps", 0, AlertSettings(nps_detractors=False), None),
        ("yesno", 0, DEFAULT, None),
        ("yesno", 0, AlertSettings(fcr_no=True), "fcr_no"),
        ("yesno", 1, AlertSettings(fcr_no=True), None),
        ("comment", None, DEFAULT, None),
        ("csat", None, DEFAULT, None),
    ],
)
def test_alert_rules(qtype: str, value: int | None, rules: AlertSettings, expected: str | None) -> None:
    assert alert_reason(qtype, value, rules) == expected


def test_the_workflow_is_exactly_the_documented_one() -> None:
    allowed = {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets}
    assert allowed == {
        ("open", "acknowledged"),
        ("open", "closed"),
        ("acknowledged", "called_back"),
        ("acknowledged", "closed"),
        ("called_back", "closed"),
        ("closed", "open"),  # reopen
    }
    states = ["open", "acknowledged", "called_back", "closed"]
    for a in states:
        for b in states:
            if (a, b) in allowed:
                assert transition(a, b) == b
            else:
                with pytest.raises(AlertTransitionError):
                    transition(a, b)
    with pytest.raises(AlertTransitionError, match="cannot go from closed to called_back.*can go to open"):
        transition("closed", "called_back")
    with pytest.raises(AlertTransitionError, match="already acknowledged"):
        transition("acknowledged", "acknowledged")
    with pytest.raises(AlertTransitionError, match="unknown alert state 'escalated'"):
        transition("open", "escalated")
    assert next_states("open") == ("acknowledged", "closed")
    assert next_states("nonsense") == ()


def test_notes_are_kept_as_given_but_within_what_the_database_takes() -> None:
    assert clean_note("  called back, all good \r\nthanks ") == "called back, all good \nthanks"
    assert clean_note("   ") is None and clean_note(None) is None
    assert clean_note(XSS_NOTE) == XSS_NOTE  # escaping is the template's job, not the store's
    assert clean_note("x" * MAX_NOTE) == "x" * MAX_NOTE
    for bad in ["x" * (MAX_NOTE + 1), "a\x00b", "a\ud800b"]:
        with pytest.raises(NoteError):
            clean_note(bad)


# -- the scanner -----------------------------------------------------------------------------------


def test_scan_raises_exactly_the_low_answers_once(engine: Engine) -> None:
    seed_calls(engine)
    settings = web_settings()
    created = scan_new_answers(engine, settings, max_age=ALL_SEEDED)
    expected = _seeded_low_answers()
    assert len(expected) == 17
    assert {(a.call_uniqueid, a.question) for a in created} == expected
    assert _alert_keys(engine) == expected
    by_key = {(a.call_uniqueid, a.question): a for a in created}
    carol = by_key[("17000015.15", "csat")]
    assert (carol.agent, carol.value, carol.reason, carol.state) == ("carol", 1, "low_csat", "open")
    assert by_key[("17000015.15", "nps")].reason == "nps_detractor"
    with engine.connect() as conn:
        top = conn.execute(select(func.max(Answer.id))).scalar()
        answer = conn.execute(select(Answer).where(Answer.id == carol.answer_id)).one()
    assert (answer.call_uniqueid, answer.question) == ("17000015.15", "csat")
    assert read_watermark(engine) == top

    assert scan_new_answers(engine, settings, max_age=ALL_SEEDED) == []
    # A lost watermark (or a second scanner) re-reads everything and still raises nothing twice.
    with engine.begin() as conn:
        conn.execute(RollupState.__table__.delete().where(RollupState.key == WATERMARK_KEY))
    assert scan_new_answers(engine, settings, max_age=ALL_SEEDED) == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Alert)).scalar() == 17


def test_only_recent_answers_raise_alerts_so_history_never_floods_the_supervisors(engine: Engine) -> None:
    seed_calls(engine)
    settings = web_settings()
    first = scan_new_answers(engine, settings)  # default: answers of the last 2 days
    assert {(a.agent, a.question, a.value) for a in first} == {
        ("bob", "nps", 6),
        ("carol", "csat", 1),
        ("carol", "nps", 2),
        (XSS_AGENT, "csat", 2),
        (XSS_AGENT, "nps", 4),
    }
    # An import of old answers after the first scan gets new ids but is still history.
    insert_answer(engine, _answer("old.1", "csat", "csat", 1, answered_at=utcnow() - timedelta(days=40)))
    assert scan_new_answers(engine, settings) == []
    insert_answer(engine, _answer("new.1", "csat", "csat", 1))
    assert [(a.call_uniqueid, a.reason) for a in scan_new_answers(engine, settings)] == [
        ("new.1", "low_csat")
    ]


def test_an_answer_that_commits_below_the_watermark_is_not_missed(engine: Engine) -> None:
    """PostgreSQL shows a row at commit, not when its id was taken: the scan re-reads an overlap."""
    seed_calls(engine)
    settings = web_settings()
    scan_new_answers(engine, settings)
    mark = read_watermark(engine)
    assert mark is not None
    with engine.begin() as conn:  # as if a faster transaction had already pushed the watermark on
        conn.execute(
            RollupState.__table__.update().where(RollupState.key == WATERMARK_KEY).values(value=str(mark + 3))
        )
    insert_answer(engine, _answer("late.1", "nps", "nps", 0))  # gets id mark + 1 < watermark
    assert [a.call_uniqueid for a in scan_new_answers(engine, settings)] == ["late.1"]
    assert read_watermark(engine) == mark + 3  # never moves backwards


def test_the_rules_come_from_the_settings(engine: Engine) -> None:
    seed_calls(engine)
    settings = web_settings(alerts={"max_csat": 1, "nps_detractors": False, "fcr_no": True})
    created = scan_new_answers(engine, settings, max_age=ALL_SEEDED)
    reasons: dict[str, int] = {}
    for a in created:
        reasons[a.reason] = reasons.get(a.reason, 0) + 1
    # csat 1: alice once, carol twice; fcr "no" is stored for every rating below 3 (7 calls).
    assert reasons == {"low_csat": 3, "fcr_no": 7}
    assert scan_new_answers(engine, web_settings(alerts={"enabled": False}), max_age=ALL_SEEDED) == []


# -- the webhook and the scheduled job --------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    status: int
    posts: list[tuple[str, str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1 (a free port) that records each POST and answers ``status``."""
    box = Receiver(url="", status=200)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            box.posts.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(box.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/csat"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()


def test_each_new_alert_is_posted_as_json_and_the_status_is_stored(
    engine: Engine, receiver: Receiver
) -> None:
    seed_calls(engine)
    settings = web_settings(alerts={"webhook_url": receiver.url, "webhook_timeout_s": 5})
    posted = scan_and_notify(engine, settings)
    assert len(posted) == 5 and {a.webhook_status for a in posted} == {"200"}
    assert len(receiver.posts) == 5
    path, content_type, payload = next(
        p for p in receiver.posts if p[2]["agent"] == "carol" and p[2]["question"] == "csat"
    )
    assert path == "/hooks/csat" and content_type.startswith("application/json")
    alert = next(a for a in posted if a.id == payload["id"])
    assert payload == {
        "event": "alert_raised",
        "id": alert.id,
        "agent": "carol",
        "queue": alert.queue,
        "question": "csat",
        "question_type": "csat",
        "value": 1,
        "reason": "low_csat",
        "state": "open",
        "answered_at": alert.answered_at.isoformat(timespec="seconds") + "Z",
        "call_uniqueid": alert.call_uniqueid,
        "linkedid": alert.linkedid,
        "dashboard_path": f"/alerts/{alert.id}",
    }
    assert any(p[2]["agent"] == XSS_AGENT for p in receiver.posts)  # JSON carries the name as it is
    with engine.connect() as conn:
        assert set(conn.execute(select(Alert.webhook_status)).scalars()) == {"200"}
    assert scan_and_notify(engine, settings) == [] and len(receiver.posts) == 5  # posted once


def test_a_failing_or_dead_webhook_is_recorded_and_the_scan_goes_on(
    engine: Engine, receiver: Receiver
) -> None:
    seed_calls(engine)
    receiver.status = 500
    failing = scan_and_notify(engine, web_settings(alerts={"webhook_url": receiver.url}))
    assert {a.webhook_status for a in failing} == {"error: HTTP 500"}

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    insert_answer(engine, _answer("dead.1", "csat", "csat", 1))
    insert_answer(engine, _answer("dead.2", "nps", "nps", 3))
    dead = web_settings(alerts={"webhook_url": f"http://127.0.0.1:{dead_port}/", "webhook_timeout_s": 2})
    posted = scan_and_notify(engine, dead)
    assert sorted(a.call_uniqueid for a in posted) == [
        "dead.1",
        "dead.2",
    ]  # both raised despite the first failing
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                select(Alert.call_uniqueid, Alert.webhook_status).where(Alert.call_uniqueid.like("dead.%"))
            ).all()
        )
    assert set(stored) == {"dead.1", "dead.2"}
    assert all(s.startswith("error: ") and len(s) <= 64 for s in stored.values()), stored
    assert post_alert("file:///etc/passwd", {}, 1).startswith("error: not an http(s) URL")


def test_the_job_survives_a_database_that_is_down(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    broken = create_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'csat.sqlite3'}")
    with caplog.at_level(logging.WARNING, logger="csat.alerts"):
        assert scan_and_notify(broken, web_settings()) == []
    assert "alerts not scanned: database unavailable" in caplog.text


def test_the_scanner_is_scheduled_once_at_a_time() -> None:
    scheduler = BackgroundScheduler(timezone="UTC")
    add_alert_jobs(scheduler, web_settings(alerts={"scan_interval_s": 7}), engine=None)  # type: ignore[arg-type]
    job = scheduler.get_job(JOB_ID)
    assert job is not None and job.func is scan_and_notify
    assert job.trigger.interval == timedelta(seconds=7)
    assert job.max_instances == 1 and job.coalesce is True
    off = BackgroundScheduler(timezone="UTC")
    add_alert_jobs(off, web_settings(alerts={"enabled": False}), engine=None)  # type: ignore[arg-type]
    assert off.get_jobs() == []


# -- the workflow in the store ----------------------------------------------------------------------


@pytest.fixture
def alerted(engine: Engine) -> Settings:
    seed_calls(engine)
    settings = web_settings()
    scan_new_answers(engine, settings, max_age=ALL_SEEDED)
    return settings


def test_an_alert_is_worked_through_with_notes_and_who(engine: Engine, alerted: Settings) -> None:
    alert_id = _alert_id(engine, "alice")
    assert move(engine, alert_id, "acknowledged", "sup", "will call her after lunch").state == "acknowledged"
    move(engine, alert_id, "called_back", "sup", "  she was upset about the wait \r\n")
    done = move(engine, alert_id, "closed", "admin")
    assert done.state == "closed" and done.updated_at >= done.created_at
    assert _events(engine, alert_id) == [
        ("sup", "open", "acknowledged", "will call her after lunch"),
        ("sup", "acknowledged", "called_back", "she was upset about the wait"),
        ("admin", "called_back", "closed", None),
    ]
    with pytest.raises(AlertTransitionError, match="cannot go from closed to called_back"):
        move(engine, alert_id, "called_back", "sup")
    assert len(_events(engine, alert_id)) == 3  # a refused move leaves no trace
    assert move(engine, alert_id, "open", "sup", "customer called again").state == "open"
    with pytest.raises(AlertNotFound):
        move(engine, 999_999, "acknowledged", "sup")
    with pytest.raises(AlertNotFound):
        move(engine, 999_999, "acknowledged", "sup", expected_from="open")
    with pytest.raises(NoteError):
        move(engine, alert_id, "acknowledged", "sup", "x" * (MAX_NOTE + 1))
    assert _state(engine, alert_id) == "open"


def test_a_note_is_stored_verbatim_through_bound_parameters(engine: Engine, alerted: Settings) -> None:
    alert_id = _alert_id(engine, "bob")
    note = "x'); DELETE FROM alerts; -- \" \\ %s :note ?"
    move(engine, alert_id, "closed", "o'brien", note)
    assert _events(engine, alert_id) == [("o'brien", "open", "closed", note)]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Alert)).scalar() == 17
    assert [a.agent for a in list_alerts(engine, agents={XSS_AGENT, "o'brien"})] == [XSS_AGENT, XSS_AGENT]


@pytest.mark.parametrize("expected_from", [None, "open"])
def test_two_supervisors_acknowledging_at_once_apply_once(
    engine: Engine, alerted: Settings, expected_from: str | None
) -> None:
    alert_id = _alert_id(engine, "carol")
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def acknowledge(user: str) -> None:
        start.wait()
        try:
            move(engine, alert_id, "acknowledged", user, f"mine ({user})", expected_from=expected_from)
            outcomes.append("moved")
        except AlertTransitionError as exc:  # AlertMovedMeanwhile, or "already acknowledged"
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=acknowledge, args=(u,)) for u in ("sup", "admin")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes)[-1] == "moved" and outcomes.count("moved") == 1, outcomes
    events = _events(engine, alert_id)
    assert len(events) == 1 and events[0][1:3] == ("open", "acknowledged")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AlertEvent)).scalar() == 1
    if expected_from == "open":  # the loser passed the rule check: only the conditional UPDATE stopped it
        assert sorted(outcomes) == ["AlertMovedMeanwhile", "moved"]


def test_a_move_from_a_state_that_is_gone_is_refused(engine: Engine, alerted: Settings) -> None:
    alert_id = _alert_id(engine, "carol")
    move(engine, alert_id, "acknowledged", "admin")
    with pytest.raises(AlertMovedMeanwhile, match="is acknowledged now, not open"):
        move(
            engine, alert_id, "closed", "sup", expected_from="open"
        )  # closing is legal, but not from what sup saw
    assert _state(engine, alert_id) == "acknowledged"


# -- pages and API: who may do what ----------------------------------------------------------------


@pytest.fixture
def web(client_as: ClientAs, engine: Engine) -> ClientAs:
    """``client_as`` with the seeded answers scanned into alerts (all 17 of them)."""
    scan_new_answers(engine, web_settings(), max_age=ALL_SEEDED)
    return client_as


def _csrf_header(client: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": csrf_of(client.get("/alerts").text)}


@pytest.mark.parametrize("name", ["trainer", "alice"])
def test_trainers_and_agents_have_no_alert_workflow(web: ClientAs, engine: Engine, name: str) -> None:
    client = web(name)
    alert_id = _alert_id(engine, "carol")  # the trainer's own team: still no
    own = _alert_id(engine, "alice")  # the agent's own alert: still no
    token = csrf_of(client.get("/alerts").text)  # the 403 page still carries the session's token
    for path in [
        "/alerts",
        f"/alerts/{alert_id}",
        f"/alerts/{own}",
        "/api/v1/alerts",
        f"/api/v1/alerts/{own}",
    ]:
        assert client.get(path).status_code == 403, path
    response = client.post(
        f"/api/v1/alerts/{own}/move", json={"to": "acknowledged"}, headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 403
    form = client.post(f"/alerts/{own}/move", data={"to": "closed", "csrf_token": token})
    assert form.status_code == 403
    assert _state(engine, own) == "open" and _events(engine, own) == []


def test_a_supervisor_works_only_their_teams_alerts(web: ClientAs, engine: Engine) -> None:
    sup = web("sup")
    carol, alice = _alert_id(engine, "carol"), _alert_id(engine, "alice")
    probe = _alert_id(engine, XSS_AGENT)  # an agent in no team: admins only
    for foreign in (carol, probe):
        assert sup.get(f"/alerts/{foreign}").status_code == 403
        assert sup.get(f"/api/v1/alerts/{foreign}").status_code == 403
        moved = sup.post(f"/api/v1/alerts/{foreign}/move", json={"to": "closed"}, headers=_csrf_header(sup))
        assert moved.status_code == 403 and "outside your teams" in moved.json()["detail"]
        assert _state(engine, foreign) == "open"
    assert sup.get(f"/alerts/{alice}").status_code == 200
    listed = sup.get("/api/v1/alerts").json()
    assert {a["agent"] for a in listed["items"]} == {"alice", "bob"}
    assert listed["total"] == len(listed["items"]) == 6  # alice 2, bob 4
    page = sup.get("/alerts")
    assert page.status_code == 200 and "carol" not in page.text and f'href="/alerts/{alice}"' in page.text
    admin = web("admin").get("/api/v1/alerts?limit=500").json()
    assert admin["total"] == 17 and {a["agent"] for a in admin["items"]} == {
        "alice",
        "bob",
        "carol",
        XSS_AGENT,
    }


def test_anonymous_requests_sign_in_first(web_client: TestClient) -> None:
    assert web_client.get("/api/v1/alerts").status_code == 401
    assert web_client.post("/api/v1/alerts/1/move", json={"to": "closed"}).status_code in (401, 403)
    page = web_client.get("/alerts", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_the_workflow_on_the_page_and_in_the_api(web: ClientAs, engine: Engine) -> None:
    sup = web("sup")
    alert_id = _alert_id(engine, "alice")
    page = sup.get(f"/alerts/{alert_id}")
    assert (
        'value="acknowledged">Acknowledge</button>' in page.text
        and 'value="closed">Close</button>' in page.text
    )
    assert 'value="called_back"' not in page.text
    moved = sup.post(
        f"/alerts/{alert_id}/move",
        data={"to": "acknowledged", "from": "open", "note": XSS_NOTE, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert moved.status_code == 303 and moved.headers["location"] == f"/alerts/{alert_id}"
    page = sup.get(f"/alerts/{alert_id}")
    assert XSS_NOTE not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<td>sup</td>" in page.text

    api = sup.post(
        f"/api/v1/alerts/{alert_id}/move",
        json={"to": "called_back", "note": "called, sorted", "from": "acknowledged"},
        headers=_csrf_header(sup),
    )
    assert api.status_code == 200, api.text
    body = api.json()
    assert body["state"] == "called_back" and body["next_states"] == ["closed"]
    assert [(e["user"], e["from_state"], e["to_state"], e["note"]) for e in body["events"]] == [
        ("sup", "open", "acknowledged", XSS_NOTE),  # JSON is data, not markup: the note as typed
        ("sup", "acknowledged", "called_back", "called, sorted"),
    ]
    assert body["answered_at"].endswith("Z")

    illegal = sup.post(
        f"/api/v1/alerts/{alert_id}/move", json={"to": "acknowledged"}, headers=_csrf_header(sup)
    )
    assert illegal.status_code == 409
    assert illegal.json()["detail"] == (
        "an alert cannot go from called_back to acknowledged; from called_back it can go to closed"
    )
    page = sup.get(f"/alerts/{alert_id}")
    refused = sup.post(
        f"/alerts/{alert_id}/move",
        data={"to": "acknowledged", "note": "typed text survives", "csrf_token": csrf_of(page.text)},
    )
    assert refused.status_code == 409
    assert (
        "cannot go from called_back to acknowledged" in refused.text and "typed text survives" in refused.text
    )
    stale = sup.post(
        f"/alerts/{alert_id}/move",
        data={"to": "closed", "from": "open", "csrf_token": csrf_of(page.text)},
    )
    assert stale.status_code == 409 and "someone else moved it meanwhile" in stale.text
    closed = sup.post(
        f"/alerts/{alert_id}/move",
        data={"to": "closed", "from": "called_back", "csrf_token": csrf_of(page.text)},
    )
    assert (
        closed.status_code == 200 and 'value="open">Reopen</button>' in closed.text
    )  # followed the redirect
    assert [e[2] for e in _events(engine, alert_id)] == ["acknowledged", "called_back", "closed"]


def test_moves_from_a_browser_session_need_the_csrf_token(web: ClientAs, engine: Engine) -> None:
    sup = web("sup")
    alert_id = _alert_id(engine, "bob")
    assert sup.post(f"/alerts/{alert_id}/move", data={"to": "closed"}).status_code == 403
    assert (
        sup.post(f"/alerts/{alert_id}/move", data={"to": "closed", "csrf_token": "forged"}).status_code == 403
    )
    api = sup.post(f"/api/v1/alerts/{alert_id}/move", json={"to": "closed"})
    assert api.status_code == 403 and "CSRF" in api.json()["detail"]
    assert _state(engine, alert_id) == "open"
    # An API token carries no cookies, so no cross-site request can use it: no CSRF token needed.
    token = create_token(engine, "sup", "crm")
    with TestClient(sup.app, base_url="http://127.0.0.1") as script:
        ok = script.post(
            f"/api/v1/alerts/{alert_id}/move",
            json={"to": "closed"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert ok.status_code == 200 and ok.json()["state"] == "closed"


def test_agent_names_are_escaped_on_the_pages(web: ClientAs, engine: Engine) -> None:
    admin = web("admin")
    alert_id = _alert_id(engine, XSS_AGENT)
    for path in ["/alerts", f"/alerts/{alert_id}"]:
        page = admin.get(path)
        assert page.status_code == 200
        assert XSS_AGENT not in page.text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text


def test_bad_input_is_refused_before_the_database(web: ClientAs, engine: Engine) -> None:
    admin = web("admin")
    headers = _csrf_header(admin)
    alert_id = _alert_id(engine, "bob")
    for body in [
        {"to": "escalated"},
        {"to": "closed", "note": "x" * (MAX_NOTE + 1)},
        {"to": "closed", "note": "nul\x00byte"},
        {"to": "closed", "from": "limbo"},
        {"note": "no target"},
    ]:
        response = admin.post(f"/api/v1/alerts/{alert_id}/move", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
    for path in ["/api/v1/alerts/0", f"/api/v1/alerts/{2**31}", "/api/v1/alerts/abc"]:
        assert admin.get(path).status_code == 422, path
    assert admin.get("/api/v1/alerts/999999").status_code == 404
    assert admin.post("/api/v1/alerts/999999/move", json={"to": "closed"}, headers=headers).status_code == 404
    assert admin.get("/alerts/999999").status_code == 404
    for query in ["state=open' OR '1'='1", "limit=0", "limit=501", "offset=-1"]:
        assert admin.get(f"/api/v1/alerts?{query}").status_code == 422, query
    assert admin.get("/alerts?state=open' OR '1'='1").status_code == 400
    page = admin.get(f"/alerts/{alert_id}")
    form = admin.post(
        f"/alerts/{alert_id}/move",
        data={"to": "closed", "note": "x" * (MAX_NOTE + 1), "csrf_token": csrf_of(page.text)},
    )
    assert form.status_code == 400 and f"at most {MAX_NOTE} characters" in form.text
    assert _state(engine, alert_id) == "open" and _events(engine, alert_id) == []


def test_the_state_filter_and_the_openapi_spec(web: ClientAs, engine: Engine) -> None:
    admin = web("admin")
    move(engine, _alert_id(engine, "bob"), "acknowledged", "admin")
    acked = admin.get("/api/v1/alerts?state=acknowledged").json()
    assert acked["total"] == 1 and [a["agent"] for a in acked["items"]] == ["bob"]
    page = admin.get("/alerts?state=acknowledged")
    assert page.status_code == 200 and page.text.count('<td class="state-acknowledged">') == 1
    assert "Open (16)" in page.text and "All (17)" in page.text
    paged = admin.get("/api/v1/alerts?limit=5&offset=15").json()
    assert paged["total"] == 17 and len(paged["items"]) == 2
    spec = admin.get("/api/openapi.json").json()
    for path, method in [
        ("/api/v1/alerts", "get"),
        ("/api/v1/alerts/{alert_id}", "get"),
        ("/api/v1/alerts/{alert_id}/move", "post"),
    ]:
        assert {"200", "401", "403"} <= set(spec["paths"][path][method]["responses"]), path
    assert "409" in spec["paths"]["/api/v1/alerts/{alert_id}/move"]["post"]["responses"]
    assert "/alerts" not in spec["paths"]
    assert spec["components"]["schemas"]["MoveIn"]["properties"]["note"]["anyOf"][0]["maxLength"] == MAX_NOTE


def test_list_alerts_limits_to_the_given_agents(engine: Engine, alerted: Settings) -> None:
    assert list_alerts(engine, agents=set()) == []
    assert {a.agent for a in list_alerts(engine, agents={"bob"})} == {"bob"}
    assert len(list_alerts(engine, agents=None, limit=500)) == 17
    assert alert_store.state_counts(engine, agents={"carol"}) == {"open": 9}
