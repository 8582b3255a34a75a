"""The SIPp rig against a real private Asterisk 16: does a key press arrive as sent?

This proves the test harness (ivr.asterisk_runner + ivr.simulate), not the product survey: the
``csat-survey`` context below is a TEST-ONLY plain-dialplan loop. Per prompt it sends
``SURVEY_PROMPT <n> <agent>`` (SIP MESSAGE), reads 1-2 digits and reports them in a
``UserEvent(TestDigit)``; an empty answer (timeout or ``#``) ends it.

One Asterisk, one set of agent phones and one batch of calls serve the whole module; the tests then
assert on the AMI events collected during that batch.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr.asterisk_runner import (
    AmiUser,
    AsteriskConfig,
    AsteriskError,
    PrivateAsterisk,
    Route,
    asterisk_available,
)
from ivr.simulate import pcaps
from ivr.simulate.rig import AmiObserver
from ivr.simulate.sipp_runner import AgentPhones, CallCase, CallResult, run_calls, sipp_available

# Non-default ports, also apart from the csat call-flow rig (15060/15038/15070+/15090, RTP 21000+),
# so a demo or another test session can run at the same time. CSAT_TEST_PORT_OFFSET shifts them.
_OFFSET = int(os.environ.get("CSAT_TEST_PORT_OFFSET", "0"))
SIP_PORT = 15160 + _OFFSET
AMI_PORT = 15138 + _OFFSET
AGENT_BASE_PORT = 15170 + _OFFSET  # agentK on base+K
UAC_PORT = 15190 + _OFFSET
RTP_RANGE = (22000 + _OFFSET, 22999 + _OFFSET)
AMI_USER, AMI_SECRET = "rig", "rig-secret"
TALK_MS = {"agent1": 1500, "agent2": 2500, "agent3": 1800, "agent4": 3000}
RING_MS = {"agent4": 1000}  # a wide ringing window for the ring-abandon case

TEST_SURVEY = """\
; TEST-ONLY survey loop for tests/test_sipp_harness.py (not the csat product survey).
[csat-survey]
exten => s,1,GotoIf($["${MEMBERINTERFACE}" = ""]?done)
 same => n,Set(P=0)
 same => n(ask),Set(P=$[${P} + 1])
 same => n,GotoIf($[${P} > 8]?done)
 same => n,ExecIf($["${CSAT_TEST_SYNC}" = "1"]?SendText(SURVEY_PROMPT ${P} ${MEMBERNAME}))
 same => n,Read(D,beep,2,,1,2)
 same => n,UserEvent(TestDigit,@FIELDS@)
 same => n,GotoIf($["${D}" != ""]?ask)
 same => n(done),Return()
""".replace(
    "@FIELDS@",
    "Case: ${CALLERID(name)},Num: ${CALLERID(num)},Agent: ${MEMBERNAME},"
    "Prompt: ${P},Digits: ${D},Status: ${READSTATUS}",
)

BY_AGENT = {"agent1": ("5",), "agent2": ("3",), "agent3": ("1",)}
CASES = [
    CallCase("ring-abandon", "500", "5550100", hangup_after_ms=900),  # while agent4 rings (0.5-1.5 s)
    CallCase("desc", "100", "5550101", actions=("9", "4")),
    CallCase("same", "100", "5550102", actions=("4", "4")),
    CallCase("onezero", "100", "5550103", actions=("1", "0", "10")),
    CallCase("seq", "200", "5550104", actions=("7", "1", "4")),
    CallCase("starpound", "200", "5550105", actions=("S", "4P", "P")),
    CallCase("many", "200", "5550106", actions=("98", "76", "54", "32", "10", "99", "88", "77")),
    CallCase("by-agent1", "401", "5550107", actions_by_agent=BY_AGENT),
    CallCase("by-agent2", "402", "5550108", actions_by_agent=BY_AGENT),
    CallCase("by-any", "100", "5550109", actions=("9",), actions_by_agent=BY_AGENT),
    CallCase("abandon", "300", "5550111", hangup_after_ms=1500),
    CallCase("hangup-survey", "100", "5550112", actions=("4", "H")),
    CallCase("hangup-talk", "500", "5550110", hangup_after_ms=2500, actions=("5",)),  # talk 1.5-4.5 s
]
EXPECTED_DIGITS = {
    "desc": ["9", "4", ""],
    "same": ["4", "4", ""],
    "onezero": ["1", "0", "10", ""],
    "seq": ["7", "1", "4", ""],
    "starpound": ["*", "4", ""],
    "many": ["98", "76", "54", "32", "10", "99", "88", "77"],
}


# --------------------------------------------------------------------------- fixture
@dataclass
class RigRun:
    results: dict[str, CallResult]
    ami: AmiObserver
    asterisk: PrivateAsterisk
    phones: AgentPhones

    def digits(self, case_id: str) -> list[str]:
        events = self.ami.find("UserEvent", UserEvent="TestDigit", Case=case_id)
        return [e["Digits"] for e in sorted(events, key=lambda e: int(e["Prompt"]))]


def _rig_config(run_dir: Path, survey: Path) -> AsteriskConfig:
    agents = ["agent1", "agent2", "agent3"]
    return AsteriskConfig(
        run_dir=run_dir,
        sip_port=SIP_PORT,
        ami_port=AMI_PORT,
        agent_count=4,
        agent_base_port=AGENT_BASE_PORT,
        rtp_start=RTP_RANGE[0],
        rtp_end=RTP_RANGE[1],
        queues={
            "support": list(agents),
            "sales": list(agents),
            "empty": [],
            "only1": ["agent1"],
            "only2": ["agent2"],
            "solo": ["agent4"],  # nobody else calls agent4: a caller hangup lands in the talk
        },
        routes=[
            Route("100", "support"),
            Route("200", "sales"),
            Route("300", "empty", 4),
            Route("401", "only1"),
            Route("402", "only2"),
            Route("500", "solo"),
        ],
        ami_users=[AmiUser(AMI_USER, AMI_SECRET, "all", "system,call,originate,agent,user,command")],
        csat_dialplan=survey,
        test_sync=True,
    )


def _skip_reason() -> str | None:
    if not asterisk_available():
        return "asterisk not installed"
    if not sipp_available():
        return "sipp not installed"
    if os.geteuid() != 0:
        return "SIPp play_pcap_audio needs root (raw socket)"
    return None


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RigRun]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("sipp_rig")
    survey = base / "test_survey.conf"
    survey.write_text(TEST_SURVEY)
    asterisk = PrivateAsterisk(_rig_config(base / "asterisk", survey))
    phones = AgentPhones(
        base / "agents",
        count=4,
        base_port=AGENT_BASE_PORT,
        talk_ms=TALK_MS,
        trace_messages=True,
        ring_ms=RING_MS,
    )
    ami: AmiObserver | None = None
    try:
        asterisk.start()
        phones.start()
        ami = AmiObserver(AMI_PORT, AmiUser(AMI_USER, AMI_SECRET, "all", "system"))
        results = run_calls(
            CASES, work_dir=base / "uac", sip_port=SIP_PORT, local_port=UAC_PORT, timeout_s=150
        )
        time.sleep(0.5)  # trailing AMI events (agent leg hangups) after the last BYE
        yield RigRun({r.case_id: r for r in results}, ami, asterisk, phones)
    finally:
        if ami is not None:
            ami.close()
        phones.stop()
        asterisk.stop()


# --------------------------------------------------------------------------- tests
@pytest.mark.asterisk
def test_every_call_completes(rig: RigRun) -> None:
    failed = {cid: r.error for cid, r in rig.results.items() if not r.ok}
    assert not failed, f"failed calls: {failed}; see {rig.asterisk.full_log}"
    assert all(rig.phones.alive().values()), "an agent phone died during the run"


@pytest.mark.asterisk
@pytest.mark.parametrize("case_id", sorted(EXPECTED_DIGITS))
def test_digits_arrive_exactly_as_sent(rig: RigRun, case_id: str) -> None:
    """Repeated (4,4), descending (9,4 / 1,0), two presses in one Read (10), * and 16 presses."""
    assert rig.digits(case_id) == EXPECTED_DIGITS[case_id]
    assert rig.results[case_id].prompts == len(EXPECTED_DIGITS[case_id])


@pytest.mark.asterisk
def test_pound_ends_input_and_star_is_a_digit(rig: RigRun) -> None:
    events = rig.ami.find("UserEvent", UserEvent="TestDigit", Case="starpound")
    by_prompt = {int(e["Prompt"]): e for e in events}
    assert by_prompt[1]["Digits"] == "*"
    # "4#": # terminates Read before the timeout -> OK, not TIMEOUT; "#" alone -> empty, OK.
    assert (by_prompt[2]["Digits"], by_prompt[2]["Status"]) == ("4", "OK")
    assert (by_prompt[3]["Digits"], by_prompt[3]["Status"]) == ("", "OK")


@pytest.mark.asterisk
@pytest.mark.parametrize("case_id", ["by-agent1", "by-agent2", "by-any"])
def test_actions_follow_the_agent_named_in_the_prompt(rig: RigRun, case_id: str) -> None:
    result = rig.results[case_id]
    assert result.agent in BY_AGENT
    events = rig.ami.find("UserEvent", UserEvent="TestDigit", Case=case_id)
    assert events and all(e["Agent"] == result.agent for e in events)
    assert rig.digits(case_id)[0] == BY_AGENT[result.agent][0]


@pytest.mark.asterisk
def test_dedicated_queues_reach_different_agents(rig: RigRun) -> None:
    """by-agent1/by-agent2 go to single-member queues, so two different lists were really used."""
    assert rig.results["by-agent1"].agent == "agent1"
    assert rig.results["by-agent2"].agent == "agent2"
    assert rig.digits("by-agent1")[0] != rig.digits("by-agent2")[0]


@pytest.mark.asterisk
def test_caller_number_comes_from_pai(rig: RigRun) -> None:
    numbers = {c.case_id: c.caller_number for c in CASES}
    events = rig.ami.find("UserEvent", UserEvent="TestDigit")
    assert events
    for event in events:
        assert event["Num"] == numbers[event["Case"]], event


@pytest.mark.asterisk
def test_caller_hangup_during_talk_gets_no_prompt(rig: RigRun) -> None:
    result = rig.results["hangup-talk"]
    assert (result.ok, result.prompts, result.end_reason) == (True, 0, "hangup_after")
    assert rig.ami.find("AgentConnect", CallerIDName="hangup-talk", MemberName="agent4")
    completes = rig.ami.find("AgentComplete", CallerIDName="hangup-talk")
    assert [c["Reason"] for c in completes] == ["caller"]
    assert not rig.ami.find("UserEvent", UserEvent="TestDigit", Case="hangup-talk")


@pytest.mark.asterisk
def test_hangup_in_empty_queue_abandons(rig: RigRun) -> None:
    result = rig.results["abandon"]
    assert (result.ok, result.prompts, result.end_reason) == (True, 0, "hangup_after")
    assert rig.ami.find("QueueCallerAbandon", CallerIDName="abandon", Queue="empty")
    assert not rig.ami.find("AgentConnect", CallerIDName="abandon")


@pytest.mark.asterisk
def test_hangup_while_agent_rings_cancels_the_agent(rig: RigRun) -> None:
    """The agent phone answers CANCEL with 487 and stays usable (agent4 takes hangup-talk later)."""
    result = rig.results["ring-abandon"]
    assert (result.ok, result.prompts, result.end_reason) == (True, 0, "hangup_after")
    assert rig.ami.find("AgentCalled", CallerIDName="ring-abandon", MemberName="agent4")
    assert rig.ami.find("QueueCallerAbandon", CallerIDName="ring-abandon", Queue="solo")
    assert not rig.ami.find("AgentConnect", CallerIDName="ring-abandon")


@pytest.mark.asterisk
def test_hangup_action_ends_the_survey(rig: RigRun) -> None:
    result = rig.results["hangup-survey"]
    assert (result.ok, result.prompts, result.end_reason) == (True, 2, "H")
    assert rig.digits("hangup-survey") == ["4"]


@pytest.mark.asterisk
def test_every_socket_is_loopback(rig: RigRun) -> None:
    """SIPp and Asterisk listen on 127.0.0.1 only (Asterisk's idle PJSIP resolver sockets excepted)."""
    out = subprocess.run(["ss", "-uanpH"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in out.splitlines() if '"sipp"' in line or '"asterisk"' in line]
    assert ours
    configured = {SIP_PORT, UAC_PORT, *(AGENT_BASE_PORT + k for k in range(1, 5))}
    for line in ours:
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        if host == "127.0.0.1":
            continue
        # PJSIP's DNS resolver opens two idle sockets on the wildcard address (no switch in 16).
        assert '"asterisk"' in line and int(port) not in configured, line


def test_shifted_pcaps_strictly_increase_rtp_timestamps(tmp_path: Path) -> None:
    """Any key order gets strictly newer RTP timestamps press after press (no Asterisk needed)."""
    if not pcaps.stock_pcap("0").exists():
        pytest.skip("SIPp stock DTMF pcaps not installed")
    for keys in (["9", "4"], ["4", "4"], ["1", "0"], ["7", "1", "4"], ["#", "*", "1"]):
        paths = [pcaps.write_shifted(k, n, tmp_path) for n, k in enumerate(keys, start=1)]
        per_press = [max(pcaps.rtp_timestamps([p])) for p in paths]
        firsts = [min(pcaps.rtp_timestamps([p])) for p in paths]
        assert all(later > earlier for earlier, later in zip(per_press, firsts[1:], strict=False)), keys
        combined = pcaps.write_press_sequence(keys, 1, tmp_path / "seq.pcap")
        stamps = pcaps.rtp_timestamps([combined])
        assert stamps == sorted(stamps) and len(set(stamps)) == len(keys)


# --------------------------------------------------------------------------- no Asterisk needed
ROUTE_100 = """\
exten => 100,1,NoOp(csat demo route queue=support)
 same => n,Answer()
 same => n,Set(__CSAT_TEST_SYNC=${CSAT_TEST_SYNC})
 same => n,Queue(support,c,,,30)
 same => n,Gosub(csat-survey,s,1)
 same => n,Playback(vm-goodbye)
 same => n,Hangup()
"""


def test_templates_render_a_private_tree(tmp_path: Path) -> None:
    survey = tmp_path / "survey.conf"
    survey.write_text(TEST_SURVEY)
    cfg = AsteriskConfig(run_dir=tmp_path / "run", csat_dialplan=survey, test_sync=True)
    PrivateAsterisk(cfg).render()
    etc = tmp_path / "run" / "etc"
    rendered = {p.name: p.read_text() for p in etc.glob("*.conf")}
    assert not [name for name, text in rendered.items() if re.search(r"@[A-Z][A-Z0-9_]*@", text)]
    assert re.search(r"^\[directories\]$", rendered["asterisk.conf"], re.MULTILINE)
    assert not re.search(r"^\[directories\]\(!\)", rendered["asterisk.conf"], re.MULTILINE)
    assert f"astrundir => {tmp_path / 'run' / 'run'}\n" in rendered["asterisk.conf"]
    ext = rendered["extensions.conf"]
    assert ROUTE_100 in ext and "CSAT_TEST_SYNC = 1" in ext and f'#include "{survey}"' in ext
    assert "Queue(empty,c,,,4)" in ext
    assert "contact = sip:agent3@127.0.0.1:5073" in rendered["pjsip.conf"]
    assert "bind = 127.0.0.1:5060" in rendered["pjsip.conf"]
    queues = rendered["queues.conf"]
    empty_section = queues.split("[empty]")[1]
    assert "member =>" not in empty_section
    assert queues.count("member => PJSIP/agent2,0,agent2") == 2
    assert "[csat]\nsecret = csat-secret\n" in rendered["manager.conf"]
    assert "bindaddr = 127.0.0.1" in rendered["manager.conf"]
    assert (tmp_path / "run" / "moh").is_dir()


def test_no_include_without_csat_dialplan(tmp_path: Path) -> None:
    PrivateAsterisk(AsteriskConfig(run_dir=tmp_path)).render()
    assert "#include" not in (tmp_path / "etc" / "extensions.conf").read_text()


def test_start_refuses_without_private_control_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An 'Asterisk' that never creates <run>/run/asterisk.ctl is stopped and reported."""
    pid_file = tmp_path / "fake.pid"
    fake = tmp_path / "fake-asterisk"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr("ivr.asterisk_runner.ASTERISK_BIN", str(fake))
    asterisk = PrivateAsterisk(AsteriskConfig(run_dir=tmp_path / "run"))
    with pytest.raises(AsteriskError, match="control socket"):
        asterisk.start(timeout=1.0)
    assert not asterisk.running
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
