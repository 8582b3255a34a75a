"""Record the AMI transcripts the tracker replay tests and the ingest benchmark run on.

Usage (as root, Asterisk 16 + SIPp installed)::

    .venv/bin/python scripts/record_transcripts.py [--out tests/fixtures] [--only normal,abandon ...]
        [--work-dir DIR] [--keep]

It starts a private LocalCallCentre (Asterisk + SIPp agent phones + ``csat serve``) on its own ports, then
runs each scenario with a fresh ``csat serve`` whose ``CSAT_AMI__TRANSCRIPT_PATH`` points at a new file.
So each ``<name>.ami`` holds exactly what csat's own AMI connection received during that scenario, byte
for byte: banner, Login response, events, Getvar responses, Logoff response.

Next to it goes ``<name>.expected.json``: per caller Uniqueid, the queue, the agent, the AgentComplete
reason and the outcome (after_agent / caller_hung_up / abandoned / no_agent). These never come from
csat's call tracker. The outcome is what the scenario made the caller do; the queue is the route dialled;
the agent is the one the survey prompt named to the simulated caller (SIP MESSAGE) or, without a survey,
the CONNECT line of Asterisk's own ``queue_log``. Each of them is checked against queue_log
(CONNECT / COMPLETEAGENT / COMPLETECALLER / ABANDON / EXITWITHTIMEOUT) and against what the simulated
caller saw; a disagreement aborts the recording. What csat stored in its database is compared too, and
a difference there is reported as a csat bug (it is written to the expected file under
``db_mismatches``, and the exit status is 3) without changing the expectation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ivr.asterisk_runner import Route, asterisk_available  # noqa: E402
from ivr.caller_hash import caller_hash  # noqa: E402
from ivr.simulate.rig import LocalCallCentre, RigConfig, RigPorts, json_env  # noqa: E402
from ivr.simulate.sipp_runner import CallCase, CallResult, sipp_available  # noqa: E402

# Our own ports. Other engineers' rigs use 15xxx/16xxx/17xxx *and the ports derived from them*: agent K
# of a rig with agent_base B also holds media B+2000+10K (+2) and control B+3000+K, and the caller
# holds media uac+1000 and control uac+3000; their Asterisk RTP ranges are 21000-23999. Agents on 18070
# and the caller on 18090 would therefore collide (18071-18073 and 18090 are the control ports of the
# 15xxx rig, 20090 of the 17xxx one), so agents and caller live at 26070/26090 (derived: 26071-26073,
# 28080-28102, 29071-29073, 26090, 27090, 29090).
RECORD_PORTS = RigPorts(
    sip=18060, ami=18038, agi=18573, agent_base=26070, uac=26090, rtp_start=25000, rtp_end=25999, web=16680
)
HASH_SECRET = "fixture-secret"
AGENTS = ("agent1", "agent2", "agent3")
SUPPORT_EXTEN, EMPTY_EXTEN = "100", "300"
QUEUE_OF = {SUPPORT_EXTEN: "support", EMPTY_EXTEN: "empty"}
EMPTY_QUEUE_TIMEOUT_S = 4
AGENT_TALK_MS = 2000
# One question keeps the survey (and the AGI events in the transcripts) short; "full survey" = answered.
SURVEYS = {
    "main": {
        "intro_text": None,
        "questions": [{"key": "csat", "type": "csat", "text": "Rate the agent, 1 to 5.", "timeout_s": 2.0}],
        "thanks_text": "Thanks.",
        "goodbye_text": "Goodbye.",
    }
}
SETTLE_S = 30.0

# Outcomes, spelled as ivr.call_tracker spells them (not imported: the expectation must not lean on it).
AFTER_AGENT, CALLER_HUNG_UP, ABANDONED, NO_AGENT = "after_agent", "caller_hung_up", "abandoned", "no_agent"
# What Asterisk's queue_log must show for each outcome (the independent check).
QUEUE_LOG_END = {
    AFTER_AGENT: "COMPLETEAGENT",
    CALLER_HUNG_UP: "COMPLETECALLER",
    ABANDONED: "ABANDON",
    NO_AGENT: "EXITWITHTIMEOUT",
}
COMPLETE_REASON = {AFTER_AGENT: "agent", CALLER_HUNG_UP: "caller"}
# What csat should store (calls.survey_state, calls.reason, calls.end_reason) for each outcome.
DB_EXPECTED = {
    AFTER_AGENT: ("completed", None, "agent"),
    CALLER_HUNG_UP: ("not_offered", "caller_hung_up", "caller"),
    ABANDONED: ("not_offered", "abandoned", "abandon"),
    NO_AGENT: ("not_offered", "no_agent", "no_agent"),
}


@dataclass(frozen=True)
class Planned:
    """One call as the script places it, with the outcome it is built to produce."""

    case: CallCase
    outcome: str
    digit_by_agent: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    build: Callable[[Callable[[], str]], list[Planned]]
    concurrency: int
    rate_per_s: float = 5.0


def _survey_call(number: str, digit_seed: int) -> Planned:
    digits = {agent: 1 + (digit_seed + k) % 5 for k, agent in enumerate(AGENTS)}
    case = CallCase(
        case_id=f"c{number}",
        exten=SUPPORT_EXTEN,
        caller_number=number,
        actions_by_agent={agent: (str(d),) for agent, d in digits.items()},
    )
    return Planned(case, AFTER_AGENT, digits)


def _normal(number: Callable[[], str]) -> list[Planned]:
    return [_survey_call(number(), i) for i in range(3)]


def _caller_hangup(number: Callable[[], str]) -> list[Planned]:
    out = []
    for _ in range(2):
        n = number()
        out.append(Planned(CallCase(f"c{n}", SUPPORT_EXTEN, n, hangup_after_ms=2000), CALLER_HUNG_UP))
    return out


def _abandon(number: Callable[[], str]) -> list[Planned]:
    out = []
    for _ in range(2):
        n = number()
        out.append(Planned(CallCase(f"c{n}", EMPTY_EXTEN, n, hangup_after_ms=1500), ABANDONED))
    return out


def _no_agent(number: Callable[[], str]) -> list[Planned]:
    n = number()
    return [Planned(CallCase(f"c{n}", EMPTY_EXTEN, n), NO_AGENT)]


def _concurrent(number: Callable[[], str]) -> list[Planned]:
    return [_survey_call(number(), 7 * i + 3) for i in range(30)]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "normal", "3 calls to support, one after another; the agent hangs up; survey answered", _normal, 1
        ),
        Scenario(
            "caller_hangup",
            "2 calls to support; the caller hangs up 2000 ms after answer, "
            f"the agent talks {AGENT_TALK_MS} ms",
            _caller_hangup,
            1,
        ),
        Scenario("abandon", "2 calls to the empty queue; the caller hangs up after 1.5 s", _abandon, 1),
        Scenario(
            "no_agent",
            f"1 call to the empty queue; it waits out the {EMPTY_QUEUE_TIMEOUT_S} s queue timeout",
            _no_agent,
            1,
        ),
        Scenario(
            "concurrent",
            "30 calls to support at concurrency 10 (5 calls/s) over 3 agents; every survey answered",
            _concurrent,
            10,
        ),
    )
}


# -- reading Asterisk's and csat's records ------------------------------------------------------------
def read_queue_log(path: Path) -> dict[str, list[list[str]]]:
    """queue_log lines (``time|callid|queue|agent|event|data...``) grouped by call Uniqueid."""
    by_call: dict[str, list[list[str]]] = {}
    if not path.is_file():
        return by_call
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split("|")
        if len(parts) >= 5 and parts[1] not in ("", "NONE"):
            by_call.setdefault(parts[1], []).append(parts)
    return by_call


def db_rows(db_path: Path, hashes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """calls rows by caller_hash (read-only SQLite; plain sqlite3 so nothing of csat is involved)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        marks = ",".join("?" * len(hashes))
        rows = conn.execute(f"SELECT * FROM calls WHERE caller_hash IN ({marks})", list(hashes)).fetchall()
        answers = conn.execute(
            f"SELECT a.call_uniqueid, a.question, a.value, a.agent FROM answers a JOIN calls c "
            f"ON c.uniqueid = a.call_uniqueid WHERE c.caller_hash IN ({marks})",
            list(hashes),
        ).fetchall()
    finally:
        conn.close()
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["caller_hash"] in out:
            raise SystemExit(
                f"two calls rows for one caller hash {row['caller_hash']}: numbers must be unique"
            )
        out[row["caller_hash"]] = {**dict(row), "answers": {}}
    by_uid = {r["uniqueid"]: r for r in out.values()}
    for a in answers:
        by_uid[a["call_uniqueid"]]["answers"][a["question"]] = {"value": a["value"], "agent": a["agent"]}
    return out


def wait_settled(rig: LocalCallCentre, hashes: Sequence[str], timeout: float = SETTLE_S) -> None:
    """Until Asterisk has no channel left and csat has closed every call of the scenario."""
    db = rig.data_dir / "csat.sqlite3"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        idle = "0 active channels" in rig.asterisk.cli("core show channels count")
        rows = db_rows(db, hashes)
        done = len(rows) == len(hashes) and all(
            r["ended_at"] is not None and r["survey_state"] not in ("offered", "started")
            for r in rows.values()
        )
        if idle and done:
            time.sleep(1.0)  # trailing events (agent-leg Hangup, QueueMemberStatus) reach the transcript
            return
        time.sleep(0.2)
    raise SystemExit(f"scenario did not settle within {timeout}s (channels up or calls not closed in csat)")


# -- expectations ------------------------------------------------------------------------------------
class RecordingError(SystemExit):
    pass


def expected_calls(
    plans: Sequence[Planned],
    results: Sequence[CallResult],
    rows: dict[str, dict[str, Any]],
    qlog: dict[str, list[list[str]]],
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Build the per-Uniqueid expectation; abort if Asterisk or the caller disagree with the plan."""
    calls: dict[str, dict[str, Any]] = {}
    db_mismatches: list[str] = []
    for plan, result in zip(plans, results, strict=True):
        case, outcome = plan.case, plan.outcome
        where = f"{case.case_id} ({outcome})"
        if not result.ok:
            raise RecordingError(f"{where}: the simulated caller failed: {result.error}")
        row = rows.get(caller_hash(HASH_SECRET, case.caller_number) or "")
        if row is None:
            raise RecordingError(f"{where}: csat stored no call for this caller number")
        uniqueid = row["uniqueid"]
        queue = QUEUE_OF[case.exten]
        lines = qlog.get(uniqueid, [])
        events = [p[4] for p in lines]
        if not lines or any(p[2] != queue for p in lines if p[2] != "NONE"):
            raise RecordingError(f"{where}: queue_log has no {queue!r} lines for {uniqueid}: {lines}")
        enter = [p for p in lines if p[4] == "ENTERQUEUE"]
        if len(enter) != 1 or case.caller_number not in enter[0][5:]:
            raise RecordingError(f"{where}: ENTERQUEUE of {uniqueid} does not carry {case.caller_number}")
        connects = [p[3] for p in lines if p[4] == "CONNECT"]
        if QUEUE_LOG_END[outcome] not in events:
            raise RecordingError(f"{where}: queue_log shows {events}, expected {QUEUE_LOG_END[outcome]}")
        agent: str | None = None
        if outcome in (AFTER_AGENT, CALLER_HUNG_UP):
            if len(connects) != 1:
                raise RecordingError(f"{where}: queue_log CONNECT lines {connects}, expected exactly one")
            agent = connects[0]
            if outcome == AFTER_AGENT:
                # The survey prompt named the agent to the caller: a second, independent witness.
                if result.agent != agent or result.prompts < 1:
                    raise RecordingError(f"{where}: prompt named {result.agent!r}, queue_log says {agent!r}")
            elif result.prompts:
                raise RecordingError(f"{where}: the caller hung up yet heard {result.prompts} prompt(s)")
        elif connects:
            raise RecordingError(f"{where}: queue_log shows a CONNECT to {connects} for a call never bridged")
        answers = {"csat": plan.digit_by_agent[agent]} if outcome == AFTER_AGENT and agent else {}
        calls[uniqueid] = {
            "case_id": case.case_id,
            "caller_number": case.caller_number,
            "linkedid": row["linkedid"],
            "queue": queue,
            "agent": agent,
            "agent_interface": f"PJSIP/{agent}" if agent else None,
            "complete_reason": COMPLETE_REASON.get(outcome),
            "outcome": outcome,
            "answers": answers,
            "queue_log": events,
        }
        # csat's own record: compared, never used for the expectation.
        state, reason, end_reason = DB_EXPECTED[outcome]
        got = {
            "queue": row["queue"],
            "agent": row["agent"],
            "survey_state": row["survey_state"],
            "end_reason": row["end_reason"],
            "answers": {k: v["value"] for k, v in row["answers"].items()},
        }
        want: dict[str, Any] = {
            "queue": queue,
            "agent": agent,
            "survey_state": state,
            "end_reason": end_reason,
            "answers": answers,
        }
        if reason is not None:
            got["reason"], want["reason"] = row["reason"], reason
        if got != want:
            db_mismatches.append(f"{uniqueid} {where}: csat stored {got}, expected {want}")
    return calls, db_mismatches


# -- driver ------------------------------------------------------------------------------------------
def build_rig(work: Path, transcript: Path) -> LocalCallCentre:
    env = {
        "CSAT_DATA_DIR": str(work / "var"),
        "CSAT_HASH_SECRET": HASH_SECRET,
        "CSAT_SURVEYS": json_env(SURVEYS),
        "CSAT_DEFAULT_POLICY": json_env({"survey": "main"}),
        "CSAT_AMI__PING_INTERVAL_S": "5",
        "CSAT_AMI__TRANSCRIPT_PATH": str(transcript),
    }
    return LocalCallCentre(
        RigConfig(
            work_dir=work,
            ports=RECORD_PORTS,
            queues={"support": list(AGENTS), "empty": []},
            routes=[Route(SUPPORT_EXTEN, "support", 30), Route(EMPTY_EXTEN, "empty", EMPTY_QUEUE_TIMEOUT_S)],
            talk_ms=AGENT_TALK_MS,
            csat_env=env,
        )
    )


def restart_csat(rig: LocalCallCentre, transcript: Path) -> None:
    """A fresh csat process (and so a fresh AMI connection) recording into ``transcript``."""
    rig.csat.stop()
    transcript.parent.mkdir(parents=True, exist_ok=True)
    transcript.unlink(missing_ok=True)
    rig.csat.env["CSAT_AMI__TRANSCRIPT_PATH"] = str(transcript)
    rig.csat.mark_log()
    rig.csat.start()


def record(rig: LocalCallCentre, scenario: Scenario, out_dir: Path, numbers: Callable[[], str]) -> list[str]:
    raw = rig.work / "transcripts" / f"{scenario.name}.ami"
    restart_csat(rig, raw)
    plans = scenario.build(numbers)
    started = time.monotonic()
    results = rig.call(
        [p.case for p in plans], concurrency=scenario.concurrency, rate_per_s=scenario.rate_per_s
    )
    hashes = [caller_hash(HASH_SECRET, p.case.caller_number) or "" for p in plans]
    wait_settled(rig, hashes)
    rig.csat.stop()  # Logoff; the transcript file is flushed and closed
    elapsed = time.monotonic() - started
    rows = db_rows(rig.data_dir / "csat.sqlite3", hashes)
    qlog = read_queue_log(rig.asterisk.log_dir / "queue_log")
    calls, db_mismatches = expected_calls(plans, results, rows, qlog)
    shutil.copyfile(raw, out_dir / f"{scenario.name}.ami")
    expected = {
        "scenario": scenario.name,
        "description": scenario.description,
        "recorded_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "asterisk": asterisk_version(),
        "calls_placed": len(plans),
        "concurrency": scenario.concurrency,
        "sources": {
            "outcome": "the scenario's plan (what the simulated caller and agents were made to do), "
            "confirmed by Asterisk's queue_log (COMPLETEAGENT/COMPLETECALLER/ABANDON/EXITWITHTIMEOUT)",
            "queue": "the extension dialled (100 = support, 300 = empty), confirmed by queue_log",
            "agent": "queue_log CONNECT line; for surveyed calls also the agent named in the survey "
            "prompt the caller received (they must agree)",
            "complete_reason": "AgentComplete Reason implied by the outcome (agent / caller; null if never "
            "bridged), confirmed by queue_log",
            "answers": "the digit the simulated caller pressed for that agent",
            "uniqueid/linkedid": "csat's calls row of the caller number (its keyed hash)",
        },
        "db_mismatches": db_mismatches,
        "calls": dict(sorted(calls.items(), key=lambda kv: float(kv[0]))),
    }
    path = out_dir / f"{scenario.name}.expected.json"
    path.write_text(json.dumps(expected, indent=1) + "\n")
    size = (out_dir / f"{scenario.name}.ami").stat().st_size
    print(f"{scenario.name}: {len(calls)} calls in {elapsed:.1f}s, transcript {size:,} B", flush=True)
    for line in db_mismatches:
        print(f"  CSAT DB MISMATCH: {line}", flush=True)
    return db_mismatches


def asterisk_version() -> str:
    try:
        out = subprocess.run(["/usr/sbin/asterisk", "-V"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    parser.add_argument(
        "--only", help=f"comma-separated scenario names (default all: {', '.join(SCENARIOS)})"
    )
    parser.add_argument("--work-dir", type=Path, help="rig work directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    if os.geteuid() != 0:
        parser.error("SIPp plays DTMF pcaps through a raw socket: run as root")
    if not (asterisk_available() and sipp_available()):
        parser.error("asterisk and sipp are needed: run scripts/install-system-deps.sh")
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="csat-record-"))).resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"work dir: {work}", flush=True)
    counter = iter(range(1, 10_000))
    stamp = int(time.time()) % 100_000

    def numbers() -> str:
        return f"555{stamp:05d}{next(counter):04d}"

    rig = build_rig(work, work / "transcripts" / "startup.ami")
    mismatches: list[str] = []
    try:
        with rig:
            for name in names:
                mismatches += record(rig, SCENARIOS[name], args.out, numbers)
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    total = sum(p.stat().st_size for p in args.out.glob("*.ami"))
    print(f"fixtures in {args.out}: {total:,} B of transcripts", flush=True)
    if mismatches:
        print(f"{len(mismatches)} call(s) where csat's database disagrees with what happened", flush=True)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
