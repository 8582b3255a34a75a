"""Real calls on a real Asterisk 16: SIPp callers and agents, csat serve as a child process.

Each scenario of issue #3 is its own test; every test checks what csat stored (calls, answers,
states, reasons) against what the simulated caller pressed and which agent took the call.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest

from ivr.simulate.sipp_runner import CallCase
from tests.asterisk_rig import AGENTS, OPTED_OUT_NUMBER, ROUTES, Centre

pytestmark = pytest.mark.asterisk

SUPPORT = ROUTES["support"]


def one_call(centre: Centre, *actions: str, exten: str = SUPPORT, hangup_after_ms: int = 0, number: str = ""):
    number = number or centre.number()
    case = CallCase(
        case_id=f"c{number}",
        exten=exten,
        caller_number=number,
        hangup_after_ms=hangup_after_ms,
        actions=actions,
    )
    (result,) = centre.rig.call([case], concurrency=1)
    return number, result


def test_normal_call_stores_answers_against_agent_and_queue(centre: Centre) -> None:
    number, result = one_call(centre, "4", "1", "9P")
    assert result.ok, result.error
    row = centre.call_row(number)
    assert row.queue == "support"
    assert row.agent == result.agent and row.agent in AGENTS
    assert row.agent_interface == f"PJSIP/{row.agent}"
    assert row.linkedid == row.uniqueid
    assert row.survey_state == "completed" and row.offer_reason == "sampled"
    assert row.end_reason == "agent" and row.talk_seconds is not None and 1 <= row.talk_seconds <= 4
    answers = centre.answers(row.uniqueid)
    assert {k: a.value for k, a in answers.items()} == {"csat": 4, "fcr": 1, "nps": 9}
    assert {a.agent for a in answers.values()} == {row.agent}
    assert {a.queue for a in answers.values()} == {"support"}
    assert row.answers_count == 3


def test_caller_hangs_up_first_is_recorded_without_survey(centre: Centre) -> None:
    number, result = one_call(centre, "4", hangup_after_ms=2000)
    assert result.ok, result.error
    assert result.prompts == 0
    row = centre.call_row(number)
    assert (row.survey_state, row.reason, row.end_reason) == ("not_offered", "caller_hung_up", "caller")
    assert row.agent in AGENTS
    assert centre.answers(row.uniqueid) == {}


def test_abandon_in_queue_is_recorded(centre: Centre) -> None:
    number, result = one_call(centre, exten=ROUTES["empty"], hangup_after_ms=1500)
    assert result.ok, result.error
    row = centre.call_row(number)
    assert (row.survey_state, row.reason, row.end_reason) == ("not_offered", "abandoned", "abandon")
    assert row.agent is None


def test_never_reaching_an_agent_is_recorded(centre: Centre) -> None:
    number, result = one_call(centre, exten=ROUTES["empty"])
    assert result.ok, result.error
    assert result.prompts == 0
    row = centre.call_row(number)
    assert (row.survey_state, row.reason) == ("not_offered", "no_agent")


def test_hang_up_after_question_one_keeps_the_answer(centre: Centre) -> None:
    number, result = one_call(centre, "5", "H")
    assert result.ok, result.error
    row = centre.call_row(number)
    assert row.survey_state == "partial"
    answers = centre.answers(row.uniqueid)
    assert {k: a.value for k, a in answers.items()} == {"csat": 5}


def test_invalid_key_then_valid(centre: Centre) -> None:
    number, result = one_call(centre, "9", "3", "2", "0P")
    assert result.ok, result.error
    row = centre.call_row(number)
    answers = centre.answers(row.uniqueid)
    assert answers["csat"].value == 3 and answers["csat"].tries == 2
    assert answers["fcr"].value == 0 and answers["nps"].value == 0
    assert row.survey_state == "completed"


def test_silence_until_give_up(centre: Centre) -> None:
    number, result = one_call(centre, "-", "-", "-")
    assert result.ok, result.error  # Asterisk hung up on the caller: no stuck channel
    assert result.prompts == 3  # asked exactly three times, then goodbye; never a loop
    row = centre.call_row(number)
    assert (row.survey_state, row.reason) == ("no_input", "no_valid_answer:csat")
    assert centre.answers(row.uniqueid) == {}


def test_nps_ten_and_zero(centre: Centre) -> None:
    ten, zero = centre.number(), centre.number()
    cases = [
        CallCase(case_id=f"c{ten}", exten=ROUTES["nps"], caller_number=ten, actions=("10",)),
        CallCase(case_id=f"c{zero}", exten=ROUTES["nps"], caller_number=zero, actions=("0P",)),
    ]
    results = centre.rig.call(cases, concurrency=2)
    assert all(r.ok for r in results), results
    for number, expected in ((ten, 10), (zero, 0)):
        row = centre.call_row(number)
        assert row.survey_state == "completed"
        assert centre.answers(row.uniqueid)["nps"].value == expected


def test_comment_question_records_on_asterisk(centre: Centre) -> None:
    """RECORD FILE really runs after the comment prompt and '#' ends it. SIPp callers send no audio,
    so the file holds no speech and, as designed, no comment row is stored; the survey completes.
    """
    observer = centre.rig.observer()
    try:
        number, result = one_call(centre, "4", "P", exten=ROUTES["comment"])
        assert result.ok, result.error
        row = centre.call_row(number)
        records = [
            e
            for e in observer.snapshot()
            if e.get("Event") == "AGIExecStart"
            and e.get("Uniqueid") == row.uniqueid
            and e.get("Command", "").startswith("RECORD FILE")
        ]
    finally:
        observer.close()
    assert len(records) == 1 and f"{row.uniqueid}-comment" in records[0]["Command"]
    assert row.survey_state == "completed"
    assert {k: a.value for k, a in centre.answers(row.uniqueid).items()} == {"csat": 4}


def test_star_and_pound_are_not_answers(centre: Centre) -> None:
    number, result = one_call(centre, "S", "P", "4", "1", "7P")
    assert result.ok, result.error
    row = centre.call_row(number)
    answers = centre.answers(row.uniqueid)
    assert answers["csat"].value == 4 and answers["csat"].tries == 3
    assert answers["nps"].value == 7


def test_eligibility_rules_on_real_calls(centre: Centre) -> None:
    """Each rule decides on a real call, and its reason is stored for audit."""
    numbers = {name: centre.number() for name in ("minimum", "sampled", "excluded")}
    numbers["opted_out"] = OPTED_OUT_NUMBER
    cases = [
        CallCase(
            case_id=f"c{numbers[q]}", exten=ROUTES[q], caller_number=numbers[q], actions=("4", "1", "5P")
        )
        for q in ("minimum", "sampled", "excluded")
    ]
    cases.append(CallCase(case_id="optout", exten=SUPPORT, caller_number=OPTED_OUT_NUMBER, actions=("4",)))
    results = centre.rig.call(cases, concurrency=3)
    assert all(r.ok for r in results), results
    expected = {
        "minimum": "talk_time_below_minimum",
        "sampled": "not_sampled",
        "excluded": "excluded_queue",
        "opted_out": "opted_out",
    }
    for name, reason in expected.items():
        row = centre.call_row(numbers[name])
        assert (row.survey_state, row.reason) == ("not_offered", reason), name
        assert centre.answers(row.uniqueid) == {}
    assert all(r.prompts == 0 for r in results)


def test_cooldown_skips_a_caller_surveyed_recently(centre: Centre) -> None:
    number = centre.number()
    _, first = one_call(centre, "4", "1", "8P", exten=ROUTES["cooldown"], number=number)
    _, second = one_call(centre, "4", "1", "8P", exten=ROUTES["cooldown"], number=number)
    assert first.ok and second.ok
    rows = sorted(centre.call_rows(number), key=lambda r: r.joined_at)
    assert [r.survey_state for r in rows] == ["completed", "not_offered"]
    assert rows[1].reason == "cooldown" and second.prompts == 0


def test_csat_stopped_mid_call_caller_hears_goodbye(centre: Centre) -> None:
    observer = centre.rig.observer()
    number = centre.number()
    try:
        holder: dict[str, object] = {}
        # "-" "-": after answering question 1 the caller waits, so csat dies while question 2 plays.
        case = CallCase(case_id=f"c{number}", exten=SUPPORT, caller_number=number, actions=("2", "-", "-"))
        t = threading.Thread(target=lambda: holder.update(r=centre.rig.call([case], concurrency=1)[0]))
        t.start()
        deadline = time.monotonic() + 30
        uniqueid = None
        while time.monotonic() < deadline and uniqueid is None:
            rows = centre.call_rows(number)
            if rows and rows[0].answers_count >= 1:
                uniqueid = rows[0].uniqueid
            time.sleep(0.05)
        assert uniqueid, "question 1 was never answered"
        centre.rig.csat.stop(signal.SIGKILL)
        t.join(60)
        result = holder["r"]
        assert result.ok, result.error  # the call ended cleanly: Asterisk sent BYE
        goodbye = [
            e
            for e in observer.snapshot()
            if e.get("Event") == "Newexten"
            and e.get("Uniqueid") == uniqueid
            and e.get("Application") == "Playback"
            and e.get("AppData", "").endswith("/goodbye")
        ]
        assert goodbye, "the dialplan did not play the goodbye after csat died"
        assert centre.rig.asterisk.cli("core show channels count").find("0 active calls") >= 0
    finally:
        observer.close()
        centre.rig.csat.mark_log()
        centre.rig.csat.start()
    row = centre.call_row(number, ended=False)
    assert row.survey_state == "partial" and row.reason == "csat_stopped_during_survey"
    assert {k: a.value for k, a in centre.answers(row.uniqueid).items()} == {"csat": 2}


def test_csat_down_caller_hears_goodbye(centre: Centre) -> None:
    """With csat not running at all, AGI() fails at once and the dialplan says goodbye: no silence."""
    observer = centre.rig.observer()
    centre.rig.csat.stop()
    try:
        number, result = one_call(centre, "4", "1", "9P")
        assert result.ok, result.error  # Asterisk ended the call cleanly
        assert result.prompts == 0
        caller = [
            e
            for e in observer.snapshot()
            if e.get("Event") == "Newchannel" and e.get("CallerIDNum") == number
        ]
        assert caller, "the call never reached Asterisk"
        uniqueid = caller[0]["Uniqueid"]
        apps = [
            (e.get("Application"), e.get("AppData", ""))
            for e in observer.snapshot()
            if e.get("Event") == "Newexten" and e.get("Uniqueid") == uniqueid
        ]
        agi = [i for i, (app, _) in enumerate(apps) if app == "AGI"]
        goodbye = [i for i, (app, data) in enumerate(apps) if app == "Playback" and data.endswith("/goodbye")]
        assert agi and goodbye and goodbye[0] > agi[0], apps
    finally:
        observer.close()
        centre.rig.csat.mark_log()
        centre.rig.csat.start()
    assert centre.call_rows(number) == []  # nothing was listening: csat cannot know of this call


def test_ami_cut_and_restored_during_calls(centre: Centre) -> None:
    """Calls keep flowing while csat's AMI link is down; nothing is lost and nothing is doubled."""
    numbers = [centre.number() for _ in range(6)]
    cases = [
        CallCase(case_id=f"c{n}", exten=SUPPORT, caller_number=n, actions=(str(1 + i % 5), "1", f"{i}P"))
        for i, n in enumerate(numbers)
    ]
    holder: dict[str, object] = {}
    t = threading.Thread(target=lambda: holder.update(r=centre.rig.call(cases, concurrency=3, rate_per_s=2)))
    t.start()
    time.sleep(2.5)
    centre.rig.csat.mark_log()
    centre.proxy.cut()
    time.sleep(4)
    centre.proxy.restore()
    t.join(120)
    results = holder["r"]
    assert all(r.ok for r in results), results
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not centre.rig.csat.log_mentions("AMI connected"):
        time.sleep(0.2)
    assert centre.rig.csat.log_mentions("AMI connected"), "csat never reconnected to AMI"
    for i, number in enumerate(numbers):
        rows = centre.call_rows(number)
        assert len(rows) == 1, number
        answers = centre.answers(rows[0].uniqueid)
        assert {k: a.value for k, a in answers.items()} == {"csat": 1 + i % 5, "fcr": 1, "nps": i}
        assert rows[0].answers_count == 3  # stored once each


def test_thirty_calls_at_concurrency_ten_over_three_agents(centre: Centre) -> None:
    rng = random.Random(7)
    cases = []
    expected: dict[str, dict[str, int]] = {}
    for _ in range(30):
        number = centre.number()
        per_agent = {agent: rng.randint(1, 5) for agent in AGENTS}
        expected[number] = per_agent
        cases.append(
            CallCase(
                case_id=f"c{number}",
                exten=SUPPORT,
                caller_number=number,
                actions_by_agent={a: (str(d), "1", "9P") for a, d in per_agent.items()},
            )
        )
    results = centre.rig.call(cases, concurrency=10, rate_per_s=5)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    by_case = {r.case_id: r for r in results}
    seen_agents = set()
    for number, per_agent in expected.items():
        row = centre.call_row(number)
        assert row.agent == by_case[f"c{number}"].agent, number
        answers = centre.answers(row.uniqueid)
        assert answers["csat"].value == per_agent[row.agent], (number, row.agent)
        assert answers["csat"].agent == row.agent
        seen_agents.add(row.agent)
    assert seen_agents == set(AGENTS)
