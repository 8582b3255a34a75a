"""Dashboard users and API tokens in the database (``csat user add``, ``csat token create``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select, update

from ivr.models import ApiToken, Role, User, UserTeam, utcnow
from scoring.web.access import Viewer
from scoring.web.security import hash_password, new_token, token_digest, verify_password


class UserError(ValueError):
    """A user command that cannot be done, said plainly (unknown user, bad role, short password)."""


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise UserError(f"unknown role {role!r}; use one of {', '.join(r.value for r in Role)}") from None


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or any(c.isspace() for c in name):
        raise UserError(f"user name {name!r} must be 1–64 characters without spaces")
    return name


def add_user(
    engine: Engine,
    name: str,
    role: str,
    password: str,
    *,
    teams: Iterable[str] = (),
    agent: str | None = None,
) -> None:
    name, r = _check_name(name), _role(role)
    teams = sorted({t for t in teams if t})
    if r in (Role.SUPERVISOR, Role.TRAINER) and not teams:
        raise UserError(f"a {r.value} sees only their teams: give at least one --team")
    if r == Role.AGENT:
        agent = agent or name
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with engine.begin() as conn:
        if conn.execute(select(User.name).where(User.name == name)).first():
            raise UserError(f"user {name!r} exists; use `csat user passwd {name}` to change the password")
        conn.execute(
            User.__table__.insert().values(  # type: ignore[attr-defined]
                name=name,
                role=r.value,
                password_hash=password_hash,
                agent=agent,
                disabled=False,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        if teams:
            conn.execute(UserTeam.__table__.insert(), [{"user": name, "team": t} for t in teams])  # type: ignore[attr-defined]


def set_password(engine: Engine, name: str, password: str) -> None:
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with engine.begin() as conn:
        done = conn.execute(
            update(User).where(User.name == name).values(password_hash=password_hash, updated_at=utcnow())  # type: ignore[arg-type]
        ).rowcount
    if not done:
        raise UserError(f"no user named {name!r}")


def set_teams(engine: Engine, name: str, teams: Iterable[str]) -> None:
    with engine.begin() as conn:
        conn.execute(delete(UserTeam).where(UserTeam.user == name))  # type: ignore[arg-type]
        rows = [{"user": name, "team": t} for t in sorted(set(teams))]
        if rows:
            conn.execute(UserTeam.__table__.insert(), rows)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    teams: list[str]
    agent: str | None
    disabled: bool


def list_users(engine: Engine) -> list[UserRow]:
    with engine.connect() as conn:
        users = conn.execute(
            select(User.name, User.role, User.agent, User.disabled).order_by(User.name)
        ).all()
        teams = conn.execute(select(UserTeam.user, UserTeam.team)).all()
    by_user: dict[str, list[str]] = {}
    for user, team in teams:
        by_user.setdefault(user, []).append(team)
    return [UserRow(u.name, u.role, sorted(by_user.get(u.name, [])), u.agent, u.disabled) for u in users]


def viewer(engine: Engine, name: str) -> Viewer | None:
    """The viewer for a signed-in name, read fresh on every request: a disabled user is out at once."""
    with engine.connect() as conn:
        user = conn.execute(
            select(User.name, User.role, User.agent, User.disabled).where(User.name == name)
        ).first()
        if user is None or user.disabled:
            return None
        teams = conn.execute(select(UserTeam.team).where(UserTeam.user == name)).scalars().all()
    return Viewer(user.name, Role(user.role), frozenset(teams), user.agent)


def authenticate(engine: Engine, name: str, password: str) -> Viewer | None:
    with engine.connect() as conn:
        row = conn.execute(select(User.password_hash, User.disabled).where(User.name == name)).first()
    ok = verify_password(row.password_hash if row else None, password)  # same work for unknown names
    if not ok or row is None or row.disabled:
        return None
    return viewer(engine, name)


def create_token(engine: Engine, name: str, label: str | None = None) -> str:
    """A new API token for ``name``; shown once, only its hash is kept."""
    if viewer(engine, name) is None:
        raise UserError(f"no active user named {name!r}")
    token = new_token()
    with engine.begin() as conn:
        conn.execute(
            ApiToken.__table__.insert().values(  # type: ignore[attr-defined]
                user=name, token_hash=token_digest(token), label=label, created_at=utcnow(), revoked=False
            )
        )
    return token


def viewer_for_token(engine: Engine, token: str) -> Viewer | None:
    digest = token_digest(token)
    with engine.begin() as conn:
        row = conn.execute(
            select(ApiToken.id, ApiToken.user).where(
                ApiToken.token_hash == digest, ApiToken.revoked.is_(False)
            )  # type: ignore[attr-defined]
        ).first()
        if row is None:
            return None
        conn.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=utcnow()))  # type: ignore[arg-type]
    return viewer(engine, row.user)
