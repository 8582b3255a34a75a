"""Signing in and out of the dashboard: hashed passwords, CSRF, rate limit, sessions, tokens (both DBs)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from ivr.models import ApiToken, User
from scoring.web.security import LoginRateLimit
from scoring.web.users import UserError, add_user, create_token, set_password
from tests.web_support import PASSWORDS, csrf_of, login


def test_passwords_are_stored_as_argon2id_hashes(web_client: TestClient, engine: Engine) -> None:
    with engine.connect() as conn:
        hashes = dict(conn.execute(select(User.name, User.password_hash)).all())
    assert all(h.startswith("$argon2id$") for h in hashes.values())
    assert not any(PASSWORDS[name] in h for name, h in hashes.items())


def test_anonymous_pages_redirect_to_login_and_api_says_401(web_client: TestClient) -> None:
    page = web_client.get("/leaderboard?queue=support", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/leaderboard%3Fqueue%3Dsupport"
    assert web_client.get("/api/v1/reports").status_code == 401


def test_login_sets_an_httponly_samesite_cookie_and_logout_ends_it(web_client: TestClient) -> None:
    page = web_client.get("/login")
    response = web_client.post(
        "/login",
        data={"username": "admin", "password": PASSWORDS["admin"], "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert web_client.get("/login", follow_redirects=False).status_code == 303  # already signed in
    home = web_client.get("/")
    web_client.post("/logout", data={"csrf_token": csrf_of(home.text)}, follow_redirects=False)
    assert web_client.get("/", follow_redirects=False).status_code == 303


def test_login_without_the_csrf_token_is_refused(web_client: TestClient) -> None:
    web_client.get("/login")
    response = web_client.post("/login", data={"username": "admin", "password": PASSWORDS["admin"]})
    assert response.status_code == 403 and "Form expired" in response.text
    assert web_client.get("/", follow_redirects=False).status_code == 303


def test_logout_needs_the_csrf_token_too(web_client: TestClient) -> None:
    login(web_client, "admin")
    assert web_client.post("/logout", data={}, follow_redirects=False).status_code == 403
    assert web_client.get("/", follow_redirects=False).status_code != 303  # still signed in


def test_wrong_passwords_are_rate_limited(web_client: TestClient) -> None:
    page = web_client.get("/login")
    token = csrf_of(page.text)
    codes = [
        web_client.post(
            "/login", data={"username": "sup", "password": "guess", "csrf_token": token}
        ).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429]
    # Even the right password waits out the minute.
    right = web_client.post(
        "/login", data={"username": "sup", "password": PASSWORDS["sup"], "csrf_token": token}
    )
    assert right.status_code == 429 and "Too many attempts" in right.text


def test_rate_limit_window_slides() -> None:
    limit = LoginRateLimit(2)
    limit.failed("u", "1.2.3.4", now=0)
    limit.failed("u", "1.2.3.4", now=1)
    assert limit.blocked("u", "1.2.3.4", now=30)
    assert not limit.blocked("u", "1.2.3.4", now=62)


def test_login_redirect_stays_on_this_site(web_client: TestClient) -> None:
    page = web_client.get("/login")
    response = web_client.post(
        "/login",
        data={
            "username": "admin",
            "password": PASSWORDS["admin"],
            "csrf_token": csrf_of(page.text),
            "next": "//evil.example/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_user_rules_and_password_change(web_client: TestClient, engine: Engine) -> None:
    for args, message in [
        (("x", "boss", "long-enough"), "unknown role 'boss'"),
        (("x", "supervisor", "long-enough"), "give at least one --team"),
        (("x", "admin", "short"), "at least 8 characters"),
        (("admin", "admin", "long-enough"), "user 'admin' exists"),
    ]:
        try:
            add_user(engine, *args)
        except UserError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{args} was accepted")
    set_password(engine, "sup", "a-new-password")
    page = web_client.get("/login")
    old = web_client.post(
        "/login", data={"username": "sup", "password": PASSWORDS["sup"], "csrf_token": csrf_of(page.text)}
    )
    assert old.status_code == 401
    login(web_client, "sup", "a-new-password")


def test_api_tokens_are_hashed_and_work_without_cookies(web_client: TestClient, engine: Engine) -> None:
    token = create_token(engine, "sup", "nightly script")
    with engine.connect() as conn:
        stored = conn.execute(select(ApiToken.token_hash)).scalars().all()
    assert token not in stored and len(stored) == 1
    assert web_client.get("/api/v1/reports", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert (
        web_client.get("/api/v1/reports", headers={"Authorization": "Bearer csat_wrong"}).status_code == 401
    )
