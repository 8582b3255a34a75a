"""Dead-air benchmark: how long the caller hears nothing between the agent's BYE and the first survey prompt.

Usage: .venv/bin/python bench/dead_air.py [--calls 60] [--concurrency 4] [--work DIR]

A private call centre (Asterisk 16 + 3 SIPp agent phones + ``csat serve``, see ivr/simulate/rig.py)
takes ``--calls`` SIPp customer calls through queue ``support``; each caller answers the 3-question
survey normally. An AMI reader with read=all keeps every event. Per caller call, on Asterisk's own
``Timestamp`` header:

* dead air    = agent leg ``HangupRequest`` (the agent's BYE arrived; the agent leg is the
                ``DestUniqueid`` of the caller's ``AgentConnect``) -> the first ``AGIExecStart`` on
                the caller channel whose ``Command`` is ``GET DATA``/``STREAM FILE`` (prompt 1 starts);
* also ``AgentComplete`` -> first prompt, and a breakdown of the dead air:
  BYE -> ``Newexten Application=AGI`` (Asterisk: Queue() returned, Gosub, AGI() starts),
  AGI() -> csat's first AGI command (connect, AGI environment, DB writes, offer lookup),
  first command -> first prompt (the test-only ``SEND TEXT`` SURVEY_PROMPT hook; a production
  survey, without the hook, would send GET DATA as its first command).

Goal: p95 <= 300 ms. Prints PASS/FAIL against it.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import _common as c
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import make_engine
from ivr.models import Answer, Call
from ivr.simulate.rig import LocalCallCentre
from ivr.simulate.sipp_runner import CallCase, CallResult

GOAL_P95_MS = 300.0
QUEUE = "support"
EXTEN = "100"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=60, help="calls to place (>= 50 for the benchmark)")
    p.add_argument("--concurrency", type=int, default=4, help="simultaneous callers (3 agents)")
    p.add_argument("--agents", type=int, default=3)
    p.add_argument("--talk-ms", type=int, default=1000, help="agent talk time before the agent's BYE")
    p.add_argument("--rate", type=float, default=2.0, help="new calls per second (until concurrency)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--work", help="work directory (default: a new /tmp/csat-deadair-*)")
    return p.parse_args()


def build_cases(n: int, seed: int) -> tuple[list[CallCase], dict[str, dict[str, int]]]:
    rng = random.Random(seed)
    tag = f"{int(time.time()) % 100000:05d}"
    cases: list[CallCase] = []
    expected: dict[str, dict[str, int]] = {}
    for i in range(n):
        number = f"5557{tag}{i:04d}"
        want = {"csat": rng.randint(1, 5), "fcr": rng.randint(1, 2), "nps": rng.randint(0, 10)}
        expected[number] = c.stored_values(want)
        cases.append(
            CallCase(
                case_id=f"d{tag}-{i:04d}",
                exten=EXTEN,
                caller_number=number,
                actions=(str(want["csat"]), str(want["fcr"]), c.nps_keys(want["nps"])),
            )
        )
    return cases, expected


def measure(
    cases: list[CallCase], results: list[CallResult], events: list[dict[str, str]]
) -> tuple[dict[str, list[float]], dict[str, list[str]], list[list[str]]]:
    """Per-metric lists of ms, case ids without a measurement grouped by reason, and per-call CSV rows."""
    callers = c.index_callers(events, {case.case_id for case in cases})
    metrics: dict[str, list[float]] = {
        "bye_to_prompt": [],
        "complete_to_prompt": [],
        "bye_to_agi_app": [],
        "agi_app_to_first_cmd": [],
        "first_cmd_to_prompt": [],
        "bye_to_first_cmd": [],
    }
    missing: dict[str, list[str]] = {}
    per_call: list[list[str]] = []
    for case, result in zip(cases, results, strict=True):
        ce = callers.get(case.case_id)
        reason = None
        if ce is None:
            reason = "caller channel not seen on AMI"
        elif ce.agent_connect is None:
            reason = "never connected to an agent"
        elif ce.agent_complete is not None and ce.agent_complete.get("Reason") != "agent":
            reason = f"AgentComplete Reason={ce.agent_complete.get('Reason')} (not the agent's BYE)"
        elif ce.agent_hangup_request is None:
            reason = "no HangupRequest on the agent leg (AgentConnect without DestUniqueid?)"
        elif ce.first_prompt is None:
            reason = f"no survey prompt played (sipp: ok={result.ok} prompts={result.prompts})"
        if reason is not None or ce is None:
            missing.setdefault(reason or "?", []).append(case.case_id)
            continue
        assert ce.agent_hangup_request is not None and ce.first_prompt is not None
        bye = c.ts(ce.agent_hangup_request)
        prompt = c.ts(ce.first_prompt)
        metrics["bye_to_prompt"].append((prompt - bye) * 1000)
        if ce.agent_complete is not None:
            metrics["complete_to_prompt"].append((prompt - c.ts(ce.agent_complete)) * 1000)
        if ce.agi_app_start is not None:
            metrics["bye_to_agi_app"].append((c.ts(ce.agi_app_start) - bye) * 1000)
            if ce.first_agi is not None:
                metrics["agi_app_to_first_cmd"].append((c.ts(ce.first_agi) - c.ts(ce.agi_app_start)) * 1000)
        if ce.first_agi is not None:
            metrics["bye_to_first_cmd"].append((c.ts(ce.first_agi) - bye) * 1000)
            metrics["first_cmd_to_prompt"].append((prompt - c.ts(ce.first_agi)) * 1000)
        complete = "" if ce.agent_complete is None else f"{(prompt - c.ts(ce.agent_complete)) * 1000:.2f}"
        first_cmd = "" if ce.first_agi is None else f"{(c.ts(ce.first_agi) - bye) * 1000:.2f}"
        agent = (ce.agent_connect or {}).get("MemberName", "")
        per_call.append(
            [case.case_id, ce.uniqueid, agent, f"{(prompt - bye) * 1000:.2f}", complete, first_cmd]
        )
    return metrics, missing, per_call


def check_answers(
    db_path: Path, expected: dict[str, dict[str, int]], settle_s: float = 15.0
) -> tuple[int, int]:
    """(calls whose stored answers equal what the caller pressed, calls checked)."""
    engine = make_engine(f"sqlite:///{db_path}")
    hashes = {number: c.caller_hash_of(number) for number in expected}
    deadline = time.monotonic() + settle_s
    good = 0
    try:
        while True:
            good = 0
            with Session(engine) as s:
                for number, want in expected.items():
                    row = s.scalars(select(Call).where(Call.caller_hash == hashes[number])).first()
                    if row is None or row.survey_state != "completed":
                        continue
                    answers = s.scalars(select(Answer).where(Answer.call_uniqueid == row.uniqueid)).all()
                    got = {a.question: a.value for a in answers}
                    if got == want and all(a.agent == row.agent for a in answers):
                        good += 1
            if good == len(expected) or time.monotonic() > deadline:
                return good, len(expected)
            time.sleep(0.5)
    finally:
        engine.dispose()


def main() -> int:
    args = parse_args()
    c.preflight(args.agents)
    work = c.work_dir(args.work, "deadair")
    config = c.rig_config(
        work,
        agents=args.agents,
        talk_ms=args.talk_ms,
        survey=c.bench_survey(timeout_s=2.0),
        queue=QUEUE,
        exten=EXTEN,
        max_wait_s=60,
    )
    cases, expected = build_cases(args.calls, args.seed)
    print(f"dead-air benchmark  {c.now_utc()}  machine: {c.machine()}")
    print(
        f"  {args.calls} calls via queue {QUEUE}, {args.agents} agents (talk {args.talk_ms} ms), "
        f"concurrency {args.concurrency}, {args.rate}/s; work dir {work}"
    )
    started = time.monotonic()
    with LocalCallCentre(config) as rig:
        print(f"  rig up in {time.monotonic() - started:.1f} s; placing calls ...", flush=True)
        observer = rig.observer()
        try:
            t0 = time.monotonic()
            results = rig.call(cases, concurrency=args.concurrency, rate_per_s=args.rate, timeout_s=200)
            calls_s = time.monotonic() - t0
            time.sleep(1.0)  # the last Hangup/AGIExecEnd events
            events = observer.snapshot()
        finally:
            observer.close()
        good, checked = check_answers(rig.data_dir / "csat.sqlite3", expected)
    runtime = time.monotonic() - started

    metrics, missing, per_call = measure(cases, results, events)
    c.dump_events(events, work / "ami-events.jsonl")
    with (work / "dead_air.csv").open("w") as out:
        out.write(
            "case_id,caller_uniqueid,agent,bye_to_prompt_ms,complete_to_prompt_ms,bye_to_first_cmd_ms\n"
        )
        out.writelines(",".join(row) + "\n" for row in per_call)
    failed = [r for r in results if not r.ok]
    dead = metrics["bye_to_prompt"]
    print()
    print(f"calls placed {len(cases)}, sipp ok {len(cases) - len(failed)}, calls phase {calls_s:.1f} s")
    for r in failed[:5]:
        print(f"  sipp failure {r.case_id}: {r.error}")
    print(f"stored answers equal to what was pressed (same agent): {good}/{checked} calls")
    print(f"AMI events kept: {len(events)}")
    print()
    print(f"measured calls: {len(dead)}   without a measurement: {sum(len(v) for v in missing.values())}")
    for why, ids in missing.items():
        print(f"  {len(ids)} x {why}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
    print()
    print("ms (AMI server Timestamps)                        ")
    rows = [
        ("agent BYE (HangupRequest) -> first prompt", "bye_to_prompt"),
        ("AgentComplete -> first prompt", "complete_to_prompt"),
        ("  breakdown: BYE -> AGI() starts (Asterisk)", "bye_to_agi_app"),
        ("  AGI() -> csat's first AGI command", "agi_app_to_first_cmd"),
        ("  first command (SEND TEXT hook) -> prompt", "first_cmd_to_prompt"),
        ("BYE -> csat's first AGI command (~ no hook)", "bye_to_first_cmd"),
    ]
    for label, key in rows:
        print(f"  {label:46s} {c.summary(metrics[key])}")
    print()
    p95 = c.percentile(dead, 95)
    enough = len(dead) >= 50
    verdict = "PASS" if enough and p95 <= GOAL_P95_MS else "FAIL"
    note = "" if enough else f" (only {len(dead)} calls measured, need >= 50)"
    print(f"{verdict}: dead air p95 {p95:.1f} ms vs goal <= {GOAL_P95_MS:.0f} ms{note}")
    print(f"per-call figures: {work / 'dead_air.csv'}; AMI events: {work / 'ami-events.jsonl'}")
    print(f"runtime {runtime:.0f} s; load average now {c.loadavg()}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    c.run_main(main)
