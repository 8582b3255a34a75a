"""Pytest plugin: one real local call centre (Asterisk 16 + SIPp agents + csat serve) per test session.

The csat configuration here is the test's own: short prompts and timeouts so a silence test takes
seconds, and one queue per eligibility rule so each rule is seen on a real call.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.asterisk_runner import Route, asterisk_available
from ivr.caller_hash import caller_hash
from ivr.db import make_engine
from ivr.models import Answer, Call
from ivr.simulate.rig import TEST_PORTS, LocalCallCentre, RigConfig, TcpProxy, json_env

HASH_SECRET = "test-secret"
OPTED_OUT_NUMBER = "5550999999"
AMI_PROXY_PORT = TEST_PORTS.ami + 1
AGENTS = ["agent1", "agent2", "agent3"]

ROUTES = {
    "support": "100",
    "nps": "110",
    "comment": "120",
    "minimum": "130",
    "sampled": "140",
    "excluded": "150",
    "cooldown": "160",
    "empty": "300",
}


def _q(key: str, type_: str, text: str) -> dict[str, Any]:
    return {"key": key, "type": type_, "text": text, "timeout_s": 2.0, "tries": 3}


SURVEYS = {
    "main": {
        "intro_text": None,
        "questions": [
            _q("csat", "csat", "Rate the agent from 1 to 5."),
            _q("fcr", "yesno", "Solved? 1 yes, 2 no."),
            _q("nps", "nps", "Recommend us? 0 to 10, then pound."),
        ],
        "thanks_text": "Thanks.",
        "goodbye_text": "Goodbye.",
    },
    "npsonly": {
        "intro_text": None,
        "questions": [_q("nps", "nps", "Recommend us? 0 to 10.")],
        "thanks_text": "Thanks.",
        "goodbye_text": "Goodbye.",
    },
    "withcomment": {
        "intro_text": None,
        "questions": [
            _q("csat", "csat", "Rate the agent from 1 to 5."),
            {
                "key": "comment",
                "type": "comment",
                "text": "Say a few words after the tone.",
                "max_record_s": 10,
            },
        ],
        "thanks_text": "Thanks.",
        "goodbye_text": "Goodbye.",
    },
}
QUEUE_POLICIES = {
    "support": {"survey": "main"},
    "nps": {"survey": "npsonly"},
    "comment": {"survey": "withcomment"},
    "minimum": {"survey": "main", "min_talk_seconds": 30},
    "sampled": {"survey": "main", "sampling_rate": 0.0},
    "cooldown": {"survey": "main", "cooldown_days": 1},
    "excluded": {"survey": "main"},
}


def csat_env(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    env = {
        "CSAT_DATA_DIR": str(data_dir),
        "CSAT_HASH_SECRET": HASH_SECRET,
        "CSAT_SURVEYS": json_env(SURVEYS),
        "CSAT_DEFAULT_POLICY": json_env({"survey": "main"}),
        "CSAT_QUEUES": json_env(QUEUE_POLICIES),
        "CSAT_EXCLUDED_QUEUES": json_env(["excluded"]),
        "CSAT_OPT_OUT_NUMBERS": json_env([OPTED_OUT_NUMBER]),
        "CSAT_SPOOL_REPLAY_INTERVAL_S": "1",
        "CSAT_AMI__PING_INTERVAL_S": "1",
        "CSAT_AMI__TRANSCRIPT_PATH": str(data_dir / "ami-transcript.ami"),
    }
    if database_url:
        env["CSAT_DATABASE_URL"] = database_url
    return env


class Centre:
    """What a test needs: place calls, find them in the database, poke csat."""

    def __init__(self, rig: LocalCallCentre, proxy: TcpProxy, engine: Engine) -> None:
        self.rig = rig
        self.proxy = proxy
        self.engine = engine
        self._numbers = itertools.count(1)

    def number(self) -> str:
        """A caller number no other test uses, so each test finds exactly its own calls."""
        return f"555{int(time.time()) % 100000:05d}{next(self._numbers):04d}"

    def call_row(self, number: str, *, settle: float = 10.0, ended: bool = True) -> Call:
        """The call of this caller number, once Asterisk has hung it up and csat has recorded that
        (``ended=False``: csat was not running when it ended, so only the survey state is awaited).
        """
        hashed = caller_hash(HASH_SECRET, number)
        deadline = time.monotonic() + settle
        row: Call | None = None
        while time.monotonic() < deadline:
            with Session(self.engine) as s:
                row = s.scalars(select(Call).where(Call.caller_hash == hashed)).first()
            if row is not None and (row.ended_at is not None or not ended) and row.survey_state != "started":
                return row
            time.sleep(0.1)
        raise AssertionError(f"no settled call row for {number}: {row}")

    def call_rows(self, number: str) -> list[Call]:
        with Session(self.engine) as s:
            return list(s.scalars(select(Call).where(Call.caller_hash == caller_hash(HASH_SECRET, number))))

    def answers(self, uniqueid: str) -> dict[str, Answer]:
        with Session(self.engine) as s:
            rows = s.scalars(select(Answer).where(Answer.call_uniqueid == uniqueid)).all()
        return {a.question: a for a in rows}


def build_rig(work: Path, database_url: str | None = None) -> LocalCallCentre:
    queues = {q: (list(AGENTS) if q != "empty" else []) for q in ROUTES}
    routes = [Route(exten, q, 4 if q == "empty" else 30) for q, exten in ROUTES.items()]
    return LocalCallCentre(
        RigConfig(
            work_dir=work,
            ports=TEST_PORTS,
            queues=queues,
            routes=routes,
            talk_ms=2000,
            csat_env=csat_env(work / "var", database_url),
            csat_ami_port=AMI_PROXY_PORT,
        )
    )


@pytest.fixture(scope="session")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Centre]:
    if not asterisk_available():
        pytest.fail("asterisk is not installed: run scripts/install-system-deps.sh (make test does)")
    work = tmp_path_factory.mktemp("centre")
    proxy = TcpProxy(AMI_PROXY_PORT, TEST_PORTS.ami)
    rig = build_rig(work)
    try:
        with rig:
            engine = make_engine(f"sqlite:///{work / 'var' / 'csat.sqlite3'}")
            yield Centre(rig, proxy, engine)
            engine.dispose()
    finally:
        proxy.close()
