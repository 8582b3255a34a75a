"""``csat user …`` and ``csat token create``: dashboard logins and API tokens from the command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from ivr.cli_support import settings_or_exit

user_app = typer.Typer(help="Dashboard users (admin, supervisor, trainer, agent).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for scripts (Authorization: Bearer …).", no_args_is_help=True)

StdinOpt = Annotated[bool, typer.Option("--password-stdin", help="read the password from standard input")]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _run(action: object) -> None:
    from scoring.web.users import UserError

    try:
        action()  # type: ignore[operator]
    except UserError as exc:
        typer.echo(f"csat: {exc}", err=True)
        raise typer.Exit(2) from None
    except SQLAlchemyError as exc:
        typer.echo(f"csat: database error ({str(exc).splitlines()[0]}); is `csat db upgrade` done?", err=True)
        raise typer.Exit(1) from None


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="login name")],
    role: Annotated[str, typer.Option(help="admin, supervisor, trainer or agent")],
    team: Annotated[
        list[str] | None, typer.Option(help="a team this supervisor/trainer sees (repeatable)")
    ] = None,
    agent: Annotated[
        str | None, typer.Option(help="role agent: the queue member name (default: NAME)")
    ] = None,
    password_stdin: StdinOpt = False,
) -> None:
    """Create a dashboard login; the password is asked twice (or read with --password-stdin)."""
    settings = settings_or_exit()
    from ivr.db import make_engine
    from scoring.web.users import add_user

    password = _password(password_stdin)
    engine = make_engine(settings.resolved_database_url)
    _run(lambda: add_user(engine, name, role, password, teams=team or [], agent=agent))
    typer.echo(f"user {name} added as {role}" + (f" for team(s) {', '.join(team)}" if team else ""))


@user_app.command("passwd")
def user_passwd(name: Annotated[str, typer.Argument()], password_stdin: StdinOpt = False) -> None:
    """Set a new password."""
    settings = settings_or_exit()
    from ivr.db import make_engine
    from scoring.web.users import set_password

    password = _password(password_stdin)
    _run(lambda: set_password(make_engine(settings.resolved_database_url), name, password))
    typer.echo(f"password of {name} changed")


@user_app.command("list")
def user_list() -> None:
    """Users with their role and teams."""
    settings = settings_or_exit()
    from ivr.db import make_engine
    from ivr.output import render
    from scoring.web.users import list_users

    rows: list[dict[str, object]] = []
    _run(
        lambda: rows.extend(
            {
                "name": u.name,
                "role": u.role,
                "teams": ",".join(u.teams),
                "agent": u.agent,
                "disabled": u.disabled,
            }
            for u in list_users(make_engine(settings.resolved_database_url))
        )
    )
    typer.echo(render(rows, "table", ["name", "role", "teams", "agent", "disabled"]))


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="the user the token acts as")],
    label: Annotated[str | None, typer.Option(help="what the token is for")] = None,
) -> None:
    """Print a new API token (shown once; only its hash is stored). It has the user's rights."""
    settings = settings_or_exit()
    from ivr.db import make_engine
    from scoring.web.users import create_token

    tokens: list[str] = []
    _run(lambda: tokens.append(create_token(make_engine(settings.resolved_database_url), name, label)))
    typer.echo(tokens[0])


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")
