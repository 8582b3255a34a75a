"""``csat check``: everything an admin must get right, each with a plain message saying what to fix."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from sqlalchemy import text

from ivr.db import make_engine
from ivr.migrate import schema_is_current
from ivr.prompts import missing_prompts
from ivr.settings import DEMO_HASH_SECRET, Settings


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str
    warning: bool = False


def run_checks(settings: Settings, *, ami_timeout: float = 5.0) -> list[CheckResult]:
    return [
        _check_secret(settings),
        _check_database(settings),
        _check_prompts(settings),
        _check_ami(settings, ami_timeout),
        _check_exports(settings),
    ]


def _check_exports(settings: Settings) -> CheckResult:
    from scoring.scheduled_exports import ExportError, export_triggers

    if not settings.exports:
        return CheckResult("exports", True, "no scheduled exports configured")
    try:
        export_triggers(settings)
    except ExportError as exc:
        return CheckResult("exports", False, str(exc))
    names = ", ".join(e.name for e in settings.exports)
    return CheckResult("exports", True, f"{len(settings.exports)} scheduled export(s): {names}")


def _check_secret(settings: Settings) -> CheckResult:
    if settings.hash_secret == DEMO_HASH_SECRET:
        return CheckResult(
            "hash_secret",
            True,
            "using the demo secret for caller-number hashes; set CSAT_HASH_SECRET (or hash_secret in "
            "csat.toml) to a long random value before real calls — changing it later breaks cooldowns",
            warning=True,
        )
    return CheckResult("hash_secret", True, "caller-number hash secret set")


def _check_database(settings: Settings) -> CheckResult:
    url = settings.resolved_database_url
    shown = url.split("@")[-1] if "@" in url else url
    try:
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure is reported, none is fatal here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CheckResult("database", False, f"cannot connect to {shown}: {first}")
    if not schema_is_current(url):
        return CheckResult(
            "database", False, f"connected to {shown}, but the schema is missing: run `csat db upgrade`"
        )
    return CheckResult("database", True, f"connected to {shown}, schema present")


def _check_prompts(settings: Settings) -> CheckResult:
    missing = missing_prompts(settings)
    if missing:
        return CheckResult(
            "prompts",
            False,
            f"{len(missing)} prompt file(s) missing, e.g. {missing[0]}: run `csat prompts build`",
        )
    return CheckResult("prompts", True, f"all prompts present under {settings.resolved_prompts_dir}")


def _check_ami(settings: Settings, timeout: float) -> CheckResult:
    """A bare login over a socket: says precisely whether the port, the banner or the secret is wrong."""
    ami = settings.ami
    where = f"{ami.host}:{ami.port}"
    try:
        with socket.create_connection((ami.host, ami.port), timeout=timeout) as sock:
            reader = sock.makefile("rb")
            banner = reader.readline().decode(errors="replace").strip()
            if not banner.startswith("Asterisk Call Manager"):
                return CheckResult("ami", False, f"{where} answered {banner!r}, not an Asterisk manager")
            for value in (ami.username, ami.secret):
                if "\r" in value or "\n" in value:
                    return CheckResult("ami", False, "AMI username/secret must not contain line breaks")
            login = (
                f"Action: Login\r\nUsername: {ami.username}\r\nSecret: {ami.secret}\r\nEvents: off\r\n\r\n"
            )
            sock.sendall(login.encode())
            response = _read_packet(reader)
            if response.get("Response") != "Success":
                return CheckResult(
                    "ami",
                    False,
                    f"login as {ami.username!r} at {where} refused ({response.get('Message', 'no message')}):"
                    " check [ami] username/secret against manager.conf",
                )
            sock.sendall(b"Action: Logoff\r\n\r\n")
    except OSError as exc:
        return CheckResult(
            "ami",
            False,
            f"cannot reach the Asterisk manager at {where}: {exc.strerror or exc} "
            "(is Asterisk running, manager.conf enabled=yes, bindaddr/port right?)",
        )
    return CheckResult("ami", True, f"logged in to the Asterisk manager at {where} as {ami.username!r}")


def _read_packet(reader: object) -> dict[str, str]:
    fields: dict[str, str] = {}
    while True:
        line = reader.readline().decode(errors="replace")  # type: ignore[attr-defined]
        if line in ("", "\r\n", "\n"):
            return fields
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
