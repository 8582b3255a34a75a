"""Load benchmark: 100 survey calls in progress at once, on a 2-core machine.

Usage: .venv/bin/python bench/load.py [--calls 100] [--agents 40] [--silences 1] [--work DIR]

A private call centre (Asterisk 16 + ``--agents`` SIPp agent phones, all members of queue
``support``, + ``csat serve``; ivr/simulate/rig.py) takes ``--calls`` SIPp customer calls at once
(concurrency = calls). Agents talk ``--talk-ms`` (500 ms), so the queue drains in a few seconds and
the callers pile up in the survey. The survey (3 questions, 2 s timeouts) keeps them there: every
question first gets ``--silences`` silent prompts, then the answer (on the re-prompt).

One deviation from the demo Asterisk config: queues.conf gets ``autofill = yes`` (``--no-autofill``
keeps the demo file). Without it Asterisk 16 lets only the head caller ring an agent, and the others
re-check once a second: ~1 caller/s reaches an agent however many are free, so at most ~20 callers
(one survey length) are ever in the survey together.

Every caller presses random keys, different for each agent that may take the call
(``actions_by_agent``). SIPp refuses scenario files over 64 KiB and the rig's UAC scenario grows with
agents x prompt slots, so only the first ~26 agents get their own keys; calls to the others use the
caller's default keys (still random per caller). Checked per call: the agent named in the caller's
SURVEY_PROMPT MESSAGE, the agent of Asterisk's ``AgentConnect`` and the DB row's agent agree, and
every stored answer equals what that caller pressed for that agent. Reported: answers sent vs stored (lost,
misattributed), peak concurrent surveys (DB [survey_started_at, survey_ended_at] overlap, and AMI
first ``AGIExecStart`` .. last ``AGIExecEnd`` per caller), CPU and peak RSS of ``csat serve`` (from
/proc), and the agent-BYE -> first-prompt dead air under this load.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import _common as c
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import make_engine
from ivr.models import Answer, Call
from ivr.simulate.rig import AmiObserver, LocalCallCentre
from ivr.simulate.sipp_runner import CallCase, CallResult

QUEUE = "support"
EXTEN = "100"
QUESTIONS = ("csat", "fcr", "nps")
GOAL_CONCURRENT = 100
SIPP_XML_LIMIT = 65536


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=100, help="callers, all placed at once")
    p.add_argument("--agents", type=int, default=40)
    p.add_argument("--talk-ms", type=int, default=500)
    p.add_argument("--rate", type=float, default=50.0, help="new calls per second")
    p.add_argument("--silences", type=int, default=1, choices=(0, 1, 2), help="silent prompts per question")
    p.add_argument("--question-timeout", type=float, default=2.0, help="seconds per prompt")
    p.add_argument(
        "--no-autofill",
        action="store_true",
        help="keep the demo queues.conf (no autofill: the queue connects ~1 caller per second)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--work", help="work directory (default: a new /tmp/csat-load-*)")
    return p.parse_args()


@dataclass
class Plan:
    cases: list[CallCase]
    numbers: dict[str, str]  # case_id -> caller number
    keys: dict[str, dict[str, dict[str, int]]]  # case_id -> agent -> question -> value stored
    answer_prompts: dict[str, int]  # question -> prompt number on which the caller answers
    own_keys_agents: list[str]  # agents with their own keys; the others share each caller's default keys


def build_plan(calls: int, agents: list[str], own_keys: int, silences: int, seed: int) -> Plan:
    """Random keys per caller, and per agent for the first ``own_keys`` agents (see ``fit_own_keys``)."""
    rng = random.Random(seed)
    tag = f"{int(time.time()) % 100000:05d}"
    cases: list[CallCase] = []
    numbers: dict[str, str] = {}
    keys: dict[str, dict[str, dict[str, int]]] = {}

    def draw() -> tuple[tuple[str, ...], dict[str, int]]:
        want = {"csat": rng.randint(1, 5), "fcr": rng.randint(1, 2), "nps": rng.randint(0, 10)}
        pressed = (str(want["csat"]), str(want["fcr"]), c.nps_keys(want["nps"]))
        return tuple(a for p in pressed for a in (*(["-"] * silences), p)), c.stored_values(want)

    for i in range(calls):
        case_id = f"l{tag}-{i:04d}"
        number = f"5558{tag}{i:04d}"
        default_actions, default_stored = draw()
        per_agent: dict[str, tuple[str, ...]] = {}
        stored: dict[str, dict[str, int]] = {}
        for agent in agents:
            if agent in agents[:own_keys]:
                per_agent[agent], stored[agent] = draw()
            else:
                stored[agent] = default_stored
        cases.append(
            CallCase(
                case_id=case_id,
                exten=EXTEN,
                caller_number=number,
                actions=default_actions,
                actions_by_agent=per_agent,
            )
        )
        numbers[case_id] = number
        keys[case_id] = stored
    answer_prompts = {q: (i + 1) * (silences + 1) for i, q in enumerate(QUESTIONS)}
    return Plan(cases, numbers, keys, answer_prompts, agents[:own_keys])


def fit_own_keys(calls: int, agents: list[str], silences: int, work: Path) -> int:
    """How many agents can get their own keys: SIPp refuses a scenario file over 65536 bytes
    (xp_parser XP_MAX_FILE_LEN), and the rig's UAC grows by one branch per agent and prompt slot.
    """
    from ivr.simulate import scenarios
    from ivr.simulate.sipp_runner import _build_inputs  # the rig's own plan builder, to size the XML

    probe = work / "calls" / "run-0000000000000"  # the same path length as the real run dirs
    try:
        for n in range(len(agents), -1, -1):
            plan = build_plan(calls, agents, n, silences, seed=0)
            uac_plan, _ = _build_inputs(plan.cases, probe)
            if len(scenarios.customer_uac_xml(uac_plan).encode()) <= SIPP_XML_LIMIT - 2048:
                return n
        return 0
    finally:
        shutil.rmtree(probe, ignore_errors=True)


@dataclass
class Verdict:
    sent: int = 0
    stored: int = 0
    lost: int = 0  # sent (the caller reached the answer prompt) but no answer row for that question
    correct: int = 0
    wrong_value: int = 0
    wrong_agent: int = 0
    extra: int = 0  # stored though the caller never got to answer it
    rows_missing: int = 0
    rows_duplicated: int = 0
    agent_disagreements: list[str] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    intervals: list[tuple[float, float]] = field(default_factory=list)
    connected: list[float] = field(default_factory=list)


def _epoch(dt: datetime | None) -> float | None:
    """csat stores naive UTC."""
    return None if dt is None else (dt - datetime(1970, 1, 1)).total_seconds()


def verify(
    plan: Plan,
    results: list[CallResult],
    callers: dict[str, c.CallerEvents],
    db_path: Path,
    settle_s: float = 20.0,
) -> Verdict:
    engine = make_engine(f"sqlite:///{db_path}")
    hashes = {case_id: c.caller_hash_of(n) for case_id, n in plan.numbers.items()}
    try:
        deadline = time.monotonic() + settle_s
        while True:  # until every call row is closed by csat (or the settle time is up)
            with Session(engine) as s:
                rows = {
                    cid: list(s.scalars(select(Call).where(Call.caller_hash == h)))
                    for cid, h in hashes.items()
                }
            open_rows = [
                r for rs in rows.values() for r in rs if r.survey_state == "started" or not r.ended_at
            ]
            if not open_rows or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        v = Verdict()
        with Session(engine) as s:
            for case, result in zip(plan.cases, results, strict=True):
                cid = case.case_id
                seen = set(result.prompt_numbers)
                v.sent += sum(1 for q in QUESTIONS if plan.answer_prompts[q] in seen)
                if not result.ok:
                    v.problems.append(f"{cid}: sipp {result.error}")
                sent_questions = {q for q in QUESTIONS if plan.answer_prompts[q] in seen}
                found = rows[cid]
                if not found:
                    v.rows_missing += 1
                    v.lost += len(sent_questions)
                    v.problems.append(f"{cid}: no call row")
                    continue
                if len(found) > 1:
                    v.rows_duplicated += 1
                    v.problems.append(f"{cid}: {len(found)} call rows")
                row = found[0]
                v.states[row.survey_state] = v.states.get(row.survey_state, 0) + 1
                ce = callers.get(cid)
                ami_agent = ce.agent_connect.get("MemberName") if ce and ce.agent_connect else None
                # A caller who never heard a prompt (hung up / aborted before the survey) names no agent.
                heard = result.agent if result.prompts else row.agent
                if not (row.agent == heard == ami_agent):
                    v.agent_disagreements.append(
                        f"{cid}: db={row.agent} caller={result.agent} ami={ami_agent}"
                    )
                connected = _epoch(row.connected_at)
                if connected is not None:
                    v.connected.append(connected)
                start, end = _epoch(row.survey_started_at), _epoch(row.survey_ended_at)
                if start is not None and end is not None:
                    v.intervals.append((start, end))
                truth_agent = ami_agent or result.agent
                want = plan.keys[cid].get(truth_agent or "", {})
                answers = s.scalars(select(Answer).where(Answer.call_uniqueid == row.uniqueid)).all()
                v.stored += len(answers)
                missing = sent_questions - {a.question for a in answers}
                v.lost += len(missing)
                if missing:
                    v.problems.append(f"{cid}: answers to {sorted(missing)} not stored")
                for a in answers:
                    if plan.answer_prompts.get(a.question) not in seen:
                        v.extra += 1
                    if a.agent != truth_agent or row.agent != truth_agent:
                        v.wrong_agent += 1
                        v.problems.append(
                            f"{cid}: answer {a.question} agent {a.agent}, took call {truth_agent}"
                        )
                    elif a.value != want.get(a.question):
                        v.wrong_value += 1
                        v.problems.append(f"{cid}: {a.question}={a.value}, pressed {want.get(a.question)}")
                    else:
                        v.correct += 1
        return v
    finally:
        engine.dispose()


def ami_peak(callers: dict[str, c.CallerEvents]) -> tuple[int, float]:
    intervals = [
        (c.ts(ce.first_agi), c.ts(ce.last_agi_end))
        for ce in callers.values()
        if ce.first_agi is not None and ce.last_agi_end is not None
    ]
    return c.peak_overlap(intervals)


def main() -> int:
    args = parse_args()
    c.preflight(args.agents)
    work = c.work_dir(args.work, "load")
    agents = [f"agent{k}" for k in range(1, args.agents + 1)]
    config = c.rig_config(
        work,
        agents=args.agents,
        talk_ms=args.talk_ms,
        survey=c.bench_survey(timeout_s=args.question_timeout),
        queue=QUEUE,
        exten=EXTEN,
        max_wait_s=120,
    )
    own = fit_own_keys(args.calls, agents, args.silences, work)
    plan = build_plan(args.calls, agents, own, args.silences, args.seed)
    print(f"load benchmark  {c.now_utc()}  machine: {c.machine()}")
    print(
        f"  {args.calls} calls at concurrency {args.calls} ({args.rate}/s) via queue {QUEUE}; "
        f"{args.agents} agents, talk {args.talk_ms} ms; survey 3 questions, {args.silences} silent prompt(s) "
        f"then the answer, {args.question_timeout} s timeouts; work dir {work}"
    )
    rest = len(agents) - own
    print(
        f"  keys: random per caller and per agent for {own} agents"
        + (
            f"; the other {rest} agents share each caller's default keys (SIPp 64 KiB scenario limit)"
            if rest
            else ""
        )
    )
    print(f"  open files limit {_nofile()}; load average before {c.loadavg()}")
    started = time.monotonic()
    rig = LocalCallCentre(config)
    rig.asterisk.config.ami_users.append(c.LIGHT_OBSERVER)
    if not args.no_autofill:
        rig.asterisk.config.template_dir = c.autofill_templates(work)
    with rig:
        assert rig.csat.proc is not None
        csat_pid = rig.csat.proc.pid
        pids = {"csat": csat_pid}
        ast_pid = _asterisk_pid(rig)
        if ast_pid:
            pids["asterisk"] = ast_pid
        print(
            f"  rig up in {time.monotonic() - started:.1f} s (csat serve pid {csat_pid}); placing calls ..."
        )
        m = Measures(calls_s=0.0, cpu_before=c.cpu_seconds(csat_pid), overflows_before=c.listen_overflows())
        observer = AmiObserver(c.BENCH_PORTS.ami, c.LIGHT_OBSERVER)
        sampler = c.ProcSampler(pids, interval=0.25)
        try:
            sampler.start()
            t0 = time.monotonic()
            results = rig.call(plan.cases, concurrency=args.calls, rate_per_s=args.rate, timeout_s=200)
            m.calls_s = time.monotonic() - t0
            sampler.stop()
            m.cpu_after = c.cpu_seconds(csat_pid)
            m.status = c.proc_status(csat_pid)
            m.overflows_after = c.listen_overflows()
            time.sleep(1.0)
            events = observer.snapshot()
        finally:
            observer.close()
            sampler.stop()
        c.dump_events(events, work / "ami-events.jsonl")
        callers = c.index_callers(events, {case.case_id for case in plan.cases})
        v = verify(plan, results, callers, rig.data_dir / "csat.sqlite3")
        m.log_counts = _csat_log_counts(rig.csat.log_path)
    ok = report(args, results, callers, v, m, sampler)
    print(f"runtime {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


@dataclass
class Measures:
    calls_s: float
    cpu_before: tuple[float, float]
    overflows_before: dict[str, int]
    cpu_after: tuple[float, float] = (0.0, 0.0)
    status: dict[str, str] = field(default_factory=dict)
    overflows_after: dict[str, int] = field(default_factory=dict)
    log_counts: dict[str, int] = field(default_factory=dict)


def report(
    args: argparse.Namespace,
    results: list[CallResult],
    callers: dict[str, c.CallerEvents],
    v: Verdict,
    m: Measures,
    sampler: c.ProcSampler,
) -> bool:
    db_peak, db_held = c.peak_overlap(v.intervals)
    ami_n, ami_held = ami_peak(callers)
    want_prompts = 3 * (args.silences + 1)
    full = sum(1 for r in results if r.prompts == want_prompts)
    misattributed = v.wrong_agent + len(v.agent_disagreements)
    durations = sorted(e - s for s, e in v.intervals)
    drain = max(v.connected) - min(v.connected) if v.connected else float("nan")

    print()
    print(f"calls placed {len(results)}, sipp ok {sum(r.ok for r in results)}, ", end="")
    print(f"all {want_prompts} prompts heard {full}; calls phase {m.calls_s:.1f} s")
    print(f"survey states in DB: {dict(sorted(v.states.items()))}; ", end="")
    print(f"call rows missing {v.rows_missing}, duplicated {v.rows_duplicated}")
    print()
    print(f"answers sent (answer prompts the callers reached) {v.sent}")
    print(f"answers stored {v.stored}: correct {v.correct}, wrong value {v.wrong_value}, ", end="")
    print(f"wrong agent {v.wrong_agent}, stored without being sent {v.extra}")
    print(f"LOST {v.lost}   MISATTRIBUTED {misattributed} ", end="")
    print(f"(answers under the wrong agent {v.wrong_agent}; calls where the caller's MESSAGE, ", end="")
    print(f"AMI AgentConnect and the DB row name different agents {len(v.agent_disagreements)})")
    for line in (v.agent_disagreements + v.problems)[:10]:
        print(f"  {line}")
    print()
    print(f"peak concurrent surveys: {db_peak} (DB survey_started_at..survey_ended_at, held {db_held:.1f} s)")
    print(
        f"                         {ami_n} (AMI first AGIExecStart..last AGIExecEnd, held {ami_held:.1f} s)"
    )
    if durations:
        print(f"survey duration s: {c.summary(durations)}")
    autofill = "off" if args.no_autofill else "on"
    print(f"queue drain: {len(v.connected)} callers connected to agents within {drain:.1f} s ", end="")
    print(f"(autofill {autofill})")
    dead = [(c.ts(ce.first_prompt) - c.ts(ce.agent_hangup_request)) * 1000 for ce in _measurable(callers)]
    to_cmd = [(c.ts(ce.first_agi) - c.ts(ce.agent_hangup_request)) * 1000 for ce in _measurable(callers)]
    print(f"dead air under load, ms: agent BYE -> first prompt  {c.summary(dead)}")
    print(f"                         agent BYE -> csat's 1st AGI command {c.summary(to_cmd)}")
    overflows = {k: m.overflows_after.get(k, 0) - m.overflows_before.get(k, 0) for k in m.overflows_before}
    print(f"TCP accept-queue overflows during the calls (machine-wide): {overflows}")
    print()
    user, sys_ = m.cpu_after[0] - m.cpu_before[0], m.cpu_after[1] - m.cpu_before[1]
    print(
        f"csat serve CPU over the calls phase ({m.calls_s:.1f} s): user {user:.2f} s + sys {sys_:.2f} s ",
        end="",
    )
    print(f"= {user + sys_:.2f} s = {100 * (user + sys_) / m.calls_s:.1f} % of one core ", end="")
    print(f"(busiest 1 s: {sampler.peak_percent('csat'):.0f} %); since start {sum(m.cpu_after):.2f} s")
    print(f"csat serve memory: peak RSS (VmHWM) {c.kib(m.status.get('VmHWM', '')) / 1024:.1f} MiB, ", end="")
    print(f"RSS at the end {c.kib(m.status.get('VmRSS', '')) / 1024:.1f} MiB; ", end="")
    print(f"peak threads {sampler.peak_threads.get('csat', 0)}")
    if "asterisk" in sampler.pids:
        print(f"asterisk: busiest 1 s {sampler.peak_percent('asterisk'):.0f} % of one core, ", end="")
        print(f"peak RSS {sampler.peak_rss_kib['asterisk'] / 1024:.1f} MiB")
    print(
        f"whole machine busy over the calls phase: {sampler.machine_busy_percent():.0f} % of 2 cores ", end=""
    )
    print(f"(other rigs included); load average {c.loadavg()}")
    print(f"csat log: {m.log_counts}")
    print()
    reached = db_peak >= GOAL_CONCURRENT
    clean = v.lost == 0 and misattributed == 0 and v.wrong_value == 0 and v.rows_missing == 0
    print(f"{'PASS' if reached else 'FAIL'}: peak concurrent surveys {db_peak} vs goal {GOAL_CONCURRENT}")
    if not reached:
        for why in _why_not(args, results, v, durations, drain):
            print(f"  {why}")
    print(f"{'PASS' if clean else 'FAIL'}: {v.lost} lost, {misattributed} misattributed, ", end="")
    print(f"{v.wrong_value} wrong values (of {v.sent} sent)")
    return reached and clean


def _measurable(callers: dict[str, c.CallerEvents]) -> list[c.CallerEvents]:
    return [
        ce
        for ce in callers.values()
        if ce.first_prompt is not None and ce.first_agi is not None and ce.agent_hangup_request is not None
    ]


def _why_not(
    args: argparse.Namespace, results: list[CallResult], v: Verdict, durations: list[float], drain: float
) -> list[str]:
    reasons = []
    if args.calls < GOAL_CONCURRENT:
        reasons.append(f"only {args.calls} calls were placed")
    failed = [r for r in results if not r.ok]
    if failed:
        reasons.append(f"{len(failed)} calls failed in SIPp (first: {failed[0].error})")
    if len(v.intervals) < len(results):
        reasons.append(
            f"only {len(v.intervals)} of {len(results)} calls have a survey start and end in the DB"
        )
    if durations and drain > min(durations):
        reasons.append(
            f"the queue took {drain:.1f} s to connect every caller but the shortest survey lasted "
            f"{min(durations):.1f} s: early callers finished before the last ones started "
            "(more agents, --silences 2, or autofill)"
        )
    return reasons or ["no single cause found; see the figures above"]


def _nofile() -> str:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return f"{soft}/{hard}"


def _asterisk_pid(rig: LocalCallCentre) -> int | None:
    try:
        return int((rig.asterisk.run_dir / "run" / "asterisk.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _csat_log_counts(path: Path) -> dict[str, int]:
    """Survey milestones and every warning/error message of csat's JSON log, counted."""
    counts: dict[str, int] = {}
    milestones = {"survey started", "survey ended", "answer stored", "offer decided"}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            counts["(non-JSON line)"] = counts.get("(non-JSON line)", 0) + 1
            continue
        level, msg = str(rec.get("level", "")), str(rec.get("msg", ""))
        if msg in milestones or level in ("warning", "error", "critical"):
            key = msg if msg in milestones else f"{level}: {msg}"
            counts[key] = counts.get(key, 0) + 1
    return counts


if __name__ == "__main__":
    c.run_main(main)
