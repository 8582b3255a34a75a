"""What every ``csat`` command shares: loading the settings, and saying plainly what is wrong with them."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from ivr.settings import Settings, load_settings


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ValidationError as exc:
        typer.echo("csat: the configuration is not valid:", err=True)
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            typer.echo(f"  - {where}: {err['msg']}", err=True)
        raise typer.Exit(2) from None
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"csat: {exc}", err=True)
        raise typer.Exit(2) from None
