"""``csat demo``: a local call centre with simulated customers, so the data fills with real results.

Starts a private Asterisk with csat's rendered dialplan, three SIPp agent phones and ``csat serve``
(SQLite under the default data dir, so ``csat answers`` shows the results afterwards), then places
calls: customers of each agent press a different mix of ratings, some hang up on the agent, some
stay silent, some leave mid-survey.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Sequence
from types import FrameType

from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ivr.asterisk_runner import Route
from ivr.db import make_engine
from ivr.models import Agent, Call, utcnow
from ivr.settings import Settings
from ivr.simulate.rig import DEMO_PORTS, LocalCallCentre, RigConfig
from ivr.simulate.sipp_runner import CallCase, CallResult
from scoring.exports import render_table
from scoring.report import build_report, default_range
from scoring.tallies import ReportQuery

#: How each demo agent's customers rate them (CSAT digit weights for 1..5).
AGENT_MIX = {
    "agent1": (0.02, 0.03, 0.05, 0.30, 0.60),  # the team's star
    "agent2": (0.05, 0.10, 0.25, 0.35, 0.25),  # solid
    "agent3": (0.20, 0.25, 0.25, 0.20, 0.10),  # needs coaching
}


def demo_cases(count: int, seed: int, start: int = 0) -> list[CallCase]:
    """A realistic mix: mostly full surveys, plus hang-ups, silence and partial answers."""
    rng = random.Random(seed)
    cases: list[CallCase] = []
    for i in range(start, start + count):
        number = f"+1555{rng.randint(0, 9_999_999):07d}"
        roll = rng.random()
        case_id = f"demo-{i:04d}"
        if roll < 0.08:
            cases.append(CallCase(case_id, "100", number, hangup_after_ms=1800))  # hangs up on the agent
            continue
        if roll < 0.12:
            cases.append(CallCase(case_id, "100", number, actions=("-", "-", "-")))  # silent caller
            continue
        by_agent = {}
        for agent, weights in AGENT_MIX.items():
            csat = rng.choices(range(1, 6), weights)[0]
            fcr = "1" if rng.random() < 0.5 + 0.1 * csat else "2"
            nps = min(10, max(0, 2 * csat + rng.randint(-1, 1)))
            actions: tuple[str, ...] = (str(csat), fcr, f"{nps}P")
            if roll > 0.94:
                actions = (str(csat), "H")  # leaves after the first question
            by_agent[agent] = actions
        cases.append(CallCase(case_id, "100", number, actions_by_agent=by_agent))
    return cases


def _rig(settings: Settings) -> LocalCallCentre:
    work = (settings.data_dir / "demo").resolve()
    return LocalCallCentre(
        RigConfig(
            work_dir=work,
            ports=DEMO_PORTS,
            queues={"support": ["agent1", "agent2", "agent3"], "empty": []},
            routes=[Route("100", "support"), Route("300", "empty", 4)],
            talk_ms={"agent1": 2000, "agent2": 2500, "agent3": 3000},
            csat_env={"CSAT_DATA_DIR": str(settings.data_dir.resolve())},
        )
    )


#: The demo places tens of calls, not hundreds: judge agents from 5 answers so figures show up.
DEMO_MIN_RESPONSES = 5


def _print_summary(settings: Settings, results: Sequence[CallResult]) -> None:
    """The per-agent report from ``scoring`` (today, with intervals and ranks) and the call states."""
    scoring = settings.scoring.model_copy(
        update={"min_responses": min(settings.scoring.min_responses, DEMO_MIN_RESPONSES)}
    )
    demo_settings = settings.model_copy(update={"scoring": scoring})
    engine = make_engine(settings.resolved_database_url)
    try:
        first, last = default_range(demo_settings)
        report = build_report(engine, demo_settings, ReportQuery(by="agent", date_from=first, date_to=last))
        with Session(engine) as session:
            states = session.execute(select(Call.survey_state)).scalars().all()
    finally:
        engine.dispose()
    print()
    print(render_table(report))
    counts = {s: states.count(s) for s in sorted(set(states))}
    print(f"\ncalls this run: {len(results)} placed, {sum(r.ok for r in results)} completed by the phones")
    print("survey states (all calls stored): " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    print(f"data: {settings.resolved_database_url}")
    print(
        "more: .venv/bin/csat report --help, .venv/bin/csat agent-report agent3 -o agent3.pdf, csat answers"
    )
    print(f"dashboard: http://{settings.web.host}:{DEMO_PORTS.web}/ (sign in as demo / {DEMO_PASSWORD})")


#: Dashboard logins the demo creates (all with DEMO_PASSWORD) and the teams its agents are in.
DEMO_PASSWORD = "demo-password"
DEMO_USERS = (
    ("demo", "admin", (), None),
    ("supervisor", "supervisor", ("front-line",), None),
    ("trainer", "trainer", ("front-line", "escalations"), None),
    ("agent3", "agent", (), "agent3"),
)
DEMO_TEAMS = {"agent1": "front-line", "agent2": "front-line", "agent3": "escalations"}


def _demo_logins(settings: Settings) -> None:
    """Teams and dashboard users for the demo, created once; then say where to look."""
    from scoring.web.users import add_user, list_users

    engine = make_engine(settings.resolved_database_url)
    try:
        existing = {u.name for u in list_users(engine)}
        for name, role, teams, agent in DEMO_USERS:
            if name not in existing:
                add_user(engine, name, role, DEMO_PASSWORD, teams=teams, agent=agent)
        with engine.begin() as conn:
            known = set(conn.execute(select(Agent.agent)).scalars())
            rows = [
                {"agent": a, "team": t, "updated_at": utcnow()}
                for a, t in DEMO_TEAMS.items()
                if a not in known
            ]
            if rows:
                conn.execute(insert(Agent), rows)
    finally:
        engine.dispose()
    url = f"http://{settings.web.host}:{DEMO_PORTS.web}/"
    print(
        f"dashboard: {url}  sign in as demo / {DEMO_PASSWORD} (admin); also supervisor, trainer, agent3",
        flush=True,
    )


def _ended_calls(settings: Settings) -> int:
    """How many calls csat has recorded as ended: the demo's success criterion."""
    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            return len(session.execute(select(Call.uniqueid).where(Call.ended_at.is_not(None))).all())  # type: ignore[union-attr]
    except SQLAlchemyError:
        return 0  # no schema yet: the rig creates it
    finally:
        engine.dispose()


def _wait_ended(settings: Settings, target: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    n = _ended_calls(settings)
    while n < target and time.monotonic() < deadline:
        time.sleep(0.5)
        n = _ended_calls(settings)
    return n


def run_demo(settings: Settings, *, calls: int, once: bool, seed: int = 2026) -> int:
    def _interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    rig = _rig(settings)
    before = _ended_calls(settings)
    print(f"csat demo: starting Asterisk, 3 agent phones and csat serve under {rig.work} ...", flush=True)
    try:
        with rig:
            _demo_logins(settings)
            print(f"placing {calls} simulated calls (queue 'support', 3 agents) ...", flush=True)
            results = rig.call(demo_cases(calls, seed), concurrency=6, rate_per_s=3)
            stored = _wait_ended(settings, before + calls, timeout=30)
            _print_summary(settings, results)
            if once:
                ok = stored >= before + calls
                print("all calls stored" if ok else f"only {stored - before} of {calls} calls stored")
                return 0 if ok else 1
            print(
                "\nthe call centre keeps running (a new batch every 30 s); Ctrl-C stops everything.",
                flush=True,
            )
            batch = 0
            while True:
                time.sleep(30)
                batch += 1
                rig.call(demo_cases(6, seed + batch, start=calls + 6 * batch), concurrency=3, rate_per_s=2)
                _print_summary(settings, [])
    except KeyboardInterrupt:
        print("\nstopping: csat, agent phones and Asterisk ...", flush=True)
        return 130
