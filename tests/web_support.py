"""Fixtures for the dashboard tests: an app on the test database, four users, and surveyed calls.

Registered in ``tests/conftest.py``. Users (password = name + "-password"):
admin (admin), sup (supervisor of team nord), trainer (trainer of team sued), alice (agent).
Agents: alice and bob in nord, carol in sued, and an agent whose name is an XSS probe, in no team.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert

from ivr.models import Answer, Call, SurveyState
from ivr.settings import Settings
from scoring.web.app import create_app
from scoring.web.users import add_user

XSS_AGENT = '<script>alert("x")</script>'
PASSWORDS = {name: f"{name}-password" for name in ("admin", "sup", "trainer", "alice")}


def web_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "timezone": "Europe/Berlin",
        "teams": {"nord": ["alice", "bob"], "sued": ["carol"]},
        "web": {"secret_key": "test-secret-key"},
        "scoring": {"min_responses": 5},
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def seed_users(engine: Engine) -> None:
    add_user(engine, "admin", "admin", PASSWORDS["admin"])
    add_user(engine, "sup", "supervisor", PASSWORDS["sup"], teams=["nord"])
    add_user(engine, "trainer", "trainer", PASSWORDS["trainer"], teams=["sued"])
    add_user(engine, "alice", "agent", PASSWORDS["alice"], agent="alice")


def seed_calls(engine: Engine, now: datetime | None = None) -> None:
    """Surveyed calls over the last 20 days: alice mostly happy, bob mixed, carol poor, the probe once."""
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    plan = {
        "alice": [5, 5, 4, 5, 4, 1, 5, 4],
        "bob": [3, 4, 2, 5, 4, 3],
        "carol": [1, 2, 2, 3, 1, 4],
        XSS_AGENT: [2],
    }
    calls, answers = [], []
    i = 0
    for agent, ratings in plan.items():
        for n, rating in enumerate(ratings):
            i += 1
            uid = f"1700{i:04d}.{i}"
            at = now - timedelta(days=n * 2, hours=1, minutes=i)
            queue = "support" if n % 3 else "sales"
            calls.append(
                {
                    "uniqueid": uid,
                    "linkedid": uid,
                    "queue": queue,
                    "agent": agent,
                    "connected_at": at,
                    "ended_at": at + timedelta(minutes=4),
                    "talk_seconds": 180 + 10 * n,
                    "offer": True,
                    "survey_state": SurveyState.COMPLETED.value,
                    "survey_started_at": at + timedelta(minutes=3),
                    "answers_count": 3,
                    "updated_at": at,
                }
            )
            for pos, (key, qtype, value) in enumerate(
                [
                    ("csat", "csat", rating),
                    ("fcr", "yesno", 1 if rating >= 3 else 0),
                    ("nps", "nps", 2 * rating),
                ],
                start=1,
            ):
                answers.append(
                    {
                        "call_uniqueid": uid,
                        "linkedid": uid,
                        "queue": queue,
                        "agent": agent,
                        "survey": "default",
                        "question": key,
                        "question_type": qtype,
                        "position": pos,
                        "value": value,
                        "recording": None,  # every row names the same columns (executemany)
                        "tries": 1,
                        "answered_at": at + timedelta(minutes=3, seconds=10 * pos),
                    }
                )
            if rating == 1:
                answers.append(
                    {
                        "call_uniqueid": uid,
                        "linkedid": uid,
                        "queue": queue,
                        "agent": agent,
                        "survey": "default",
                        "question": "comment",
                        "question_type": "comment",
                        "position": 4,
                        "value": None,
                        "recording": f"2026/11/01/{uid}-comment.wav",
                        "tries": 1,
                        "answered_at": at + timedelta(minutes=3, seconds=50),
                    }
                )
    with engine.begin() as conn:
        conn.execute(insert(Call), calls)
        conn.execute(insert(Answer), answers)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def login(client: TestClient, name: str, password: str | None = None) -> TestClient:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={
            "username": name,
            "password": password or PASSWORDS[name],
            "csrf_token": csrf_of(page.text),
            "next": "/",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def web_app_settings() -> Settings:
    return web_settings()


@pytest.fixture
def web_client(engine: Engine, web_app_settings: Settings) -> Iterator[TestClient]:
    """An anonymous client on an app with the four users and the seeded calls."""
    seed_users(engine)
    seed_calls(engine)
    with TestClient(create_app(web_app_settings, engine), base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture
def client_as(engine: Engine, web_app_settings: Settings) -> Iterator[object]:
    """``client_as("sup")``: a signed-in client per user (each with its own cookies)."""
    seed_users(engine)
    seed_calls(engine)
    app = create_app(web_app_settings, engine)
    clients: list[TestClient] = []

    def make(name: str) -> TestClient:
        c = TestClient(app, base_url="http://127.0.0.1")
        c.__enter__()
        clients.append(c)
        return login(c, name)

    yield make
    for c in clients:
        c.__exit__(None, None, None)
