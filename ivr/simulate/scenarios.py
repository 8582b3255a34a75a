"""SIPp scenario XML for the simulated customer (UAC) and agent phones (UAS).

Why generated instead of static files:

* SIPp parses the ``play_pcap_audio`` path when it loads the scenario, so a key press chosen at
  run time needs one branch per pcap file. Each branch plays one pcap holding the whole key
  sequence of one survey prompt (see :func:`ivr.simulate.pcaps.write_press_sequence`).
* A recv ``timeout`` cannot come from a variable, so the agent talk time is written into the XML.

Customer CSV (``-inf``, SEQUENTIAL, one line per call)::

    case_id;exten;caller_number;hangup_after_ms;<slot 0,1>..<slot 0,P>;<slot 1,1>..<slot G,P>

Slot (g, p) is the action for survey prompt p when the prompt names agent group g: group 0 is the
default (any agent), group i >= 1 is ``groups[i-1]``. A slot is ``-`` (press nothing), ``H``
(hang up) or a pcap code ``k<N>`` (play pcap N of :attr:`UacPlan.pcaps`).

The UAC writes one ``CSAT|...`` line per event with ``<log>`` (``-trace_logs``)::

    CSAT|start|<case>|<call-id>
    CSAT|answered|<case>
    CSAT|prompt|<case>|<n>|<agent>|<count>
    CSAT|end|<case>|<reason>|<agent>|<count>     reason: remote_bye, hangup_after, H
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

FIELD_CASE = 0
FIELD_EXTEN = 1
FIELD_NUMBER = 2
FIELD_HANGUP = 3
FIRST_SLOT_FIELD = 4
NO_ACTION = "-"
HANGUP_ACTION = "H"

_SDP = """v=0
o=csat 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv
"""

_OK_TO_REQUEST = """SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0
"""


@dataclass(frozen=True)
class UacPlan:
    """What the customer scenario must be able to do in this run.

    ``groups``: agent names that get their own action columns; ``prompts``: action slots per
    group; ``pcaps``: action code (``k<N>``) -> pcap file with the presses of that slot;
    ``hangup_values``: the distinct non-zero ``hangup_after_ms`` values of the run.
    """

    groups: tuple[str, ...] = ()
    prompts: int = 8
    pcaps: Mapping[str, Path] = field(default_factory=dict)
    hangup_values: tuple[int, ...] = ()

    def slot_field(self, group: int, prompt: int) -> int:
        """CSV field index of slot (group, prompt); group 0 = default, prompt is 1-based."""
        if not (0 <= group <= len(self.groups) and 1 <= prompt <= self.prompts):
            raise ValueError(f"slot ({group}, {prompt}) outside the plan")
        return FIRST_SLOT_FIELD + group * self.prompts + (prompt - 1)

    @property
    def field_count(self) -> int:
        return FIRST_SLOT_FIELD + (len(self.groups) + 1) * self.prompts


def csv_line(
    plan: UacPlan, case_id: str, exten: str, number: str, hangup_ms: int, slots: list[list[str]]
) -> str:
    """One ``-inf`` line; ``slots[g][p-1]`` is the action code of slot (g, p)."""
    if len(slots) != len(plan.groups) + 1 or any(len(s) != plan.prompts for s in slots):
        raise ValueError("slots do not match the plan")
    fields = [case_id, exten, number, str(hangup_ms)] + [code for group in slots for code in group]
    if any(";" in f or "\n" in f for f in fields):
        raise ValueError(f"CSV field contains a separator: {fields}")
    return ";".join(fields)


# --------------------------------------------------------------------------- XML helpers
def _cdata(text: str) -> str:
    return "<![CDATA[\n" + text.strip("\n") + "\n\n]]>"


def _send(text: str, retrans: int | None = None) -> str:
    attr = f' retrans="{retrans}"' if retrans else ""
    return f"  <send{attr}>\n    {_cdata(text)}\n  </send>"


def _actions(*actions: str) -> str:
    return "<action>" + "".join(actions) + "</action>"


def _nop(*actions: str, attrs: str = "") -> str:
    attrs = (" " + attrs) if attrs else ""
    if not actions:
        return f"  <nop{attrs}/>"
    return f"  <nop{attrs}>{_actions(*actions)}</nop>"


def _jump(label: str, test: str | None = None) -> str:
    cond = f' test="{test}"' if test else ""
    return f'  <nop next="{label}"{cond}/>'


def _label(name: str) -> str:
    return f'  <label id="{name}"/>'


def _str_eq(var: str, value: str, into: str = "b") -> str:
    """Set boolean ``into`` to (string variable ``var`` == value)."""
    return (
        f'<strcmp assign_to="r" variable="{var}" value={quoteattr(value)}/>'
        f'<test assign_to="{into}" variable="r" compare="equal" value="0"/>'
    )


def _log(message: str) -> str:
    return f"<log message={quoteattr(message)}/>"


# --------------------------------------------------------------------------- customer UAC
_PARSE_PROMPT = (
    '<assignstr assign_to="pn" value=""/>'
    '<assignstr assign_to="pa" value=""/>'
    '<ereg regexp="SURVEY_PROMPT ([0-9]+) *([A-Za-z0-9_.@-]*)" search_in="body" check_it="false" '
    'assign_to="pm,pn,pa"/>'
)


def _wait_bye_or_message(timeout_ms: int | None = None, ontimeout: str | None = None) -> str:
    """An optional BYE (-> remote_bye) or a MESSAGE (-> on_msg), optionally with a timeout.

    SIPp arms the receive timeout of the element it is waiting at, which is the first (optional)
    recv of the group, so the timeout goes on both.
    """
    extra = ""
    if timeout_ms is not None:
        extra = f' timeout="{timeout_ms}" ontimeout="{ontimeout}"'
    return (
        f'  <recv request="BYE" optional="true" next="remote_bye"{extra}/>\n'
        f'  <recv request="MESSAGE" next="on_msg"{extra}>{_actions(_PARSE_PROMPT)}</recv>'
    )


def _invite() -> str:
    return (
        """INVITE sip:[field1]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "[field0]" <sip:customer@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[field1]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:customer@[local_ip]:[local_port];transport=[transport]>
P-Asserted-Identity: "[field0]" <sip:[field2]@127.0.0.1>
Max-Forwards: 70
Subject: csat simulated customer
Content-Type: application/sdp
Content-Length: [len]

"""
        + _SDP
    )


_ACK = """ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "[field0]" <sip:customer@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[field1]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:customer@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0
"""

_UAC_BYE = """BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "[field0]" <sip:customer@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[field1]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: <sip:customer@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0
"""


def _uac_setup() -> list[str]:
    return [
        # Log before the INVITE so a call rejected outright (404, 503) still maps to its Call-ID.
        _nop(
            f'<assignstr assign_to="case" value="[field{FIELD_CASE}]"/>',
            _log("CSAT|start|[$case]|[call_id]"),
        ),
        _send(_invite(), retrans=500),
        '  <recv response="100" optional="true"/>',
        '  <recv response="180" optional="true"/>',
        '  <recv response="183" optional="true"/>',
        '  <recv response="200" rrs="true"/>',
        _send(_ACK),
        _nop(
            '<assignstr assign_to="agent" value="-"/>',
            '<assignstr assign_to="act" value="-"/>',
            '<assignstr assign_to="why" value="-"/>',
            '<assign assign_to="cnt" value="0"/>',
            f'<assignstr assign_to="hs" value="[field{FIELD_HANGUP}]"/>',
            '<todouble assign_to="hms" variable="hs"/>',
            '<gettimeofday assign_to="t0s,t0u"/>',
            '<test assign_to="hmode" variable="hms" compare="greater_than" value="0"/>',
            _log("CSAT|answered|[$case]"),
        ),
        _jump("hwait", test="hmode"),
        _label("wait"),
        _wait_bye_or_message(),
    ]


def _uac_on_message(plan: UacPlan) -> list[str]:
    """Answer a MESSAGE; if it is a SURVEY_PROMPT, count it and pick the slot's action."""
    out = [
        _label("on_msg"),
        _send(_OK_TO_REQUEST),
        _nop(_str_eq("pn", "", into="notprompt")),
        _jump("after_msg", test="notprompt"),
        _nop(
            '<add assign_to="cnt" value="1"/>',
            '<assignstr assign_to="agent" value="[$pa]"/>',
            '<assignstr assign_to="act" value="-"/>',
            _log("CSAT|prompt|[$case]|[$pn]|[$pa]|[$cnt]"),
        ),
        _jump("hpoll", test="hmode"),
    ]
    if plan.groups:  # SIPp rejects a variable that is referenced only once
        out.append(_nop('<assignstr assign_to="key" value="[$pa]:[$pn]"/>'))
    # Default group first, then the per-agent groups override it.
    for prompt in range(1, plan.prompts + 1):
        out.append(_nop(_str_eq("pn", str(prompt))))
        value = f"[field{plan.slot_field(0, prompt)}]"
        out.append(_nop(f'<assignstr assign_to="act" value="{value}"/>', attrs='condexec="b"'))
    for g, agent in enumerate(plan.groups, start=1):
        for prompt in range(1, plan.prompts + 1):
            out.append(_nop(_str_eq("key", f"{agent}:{prompt}")))
            value = f"[field{plan.slot_field(g, prompt)}]"
            out.append(_nop(f'<assignstr assign_to="act" value="{value}"/>', attrs='condexec="b"'))
    out += [
        _nop(_str_eq("act", NO_ACTION, into="isnone"), _str_eq("act", HANGUP_ACTION, into="ishangup")),
        _jump("wait", test="isnone"),
        # A prompt with keys or H falls through to _uac_act; other MESSAGEs go back to waiting.
        _label("after_msg"),
        _jump("hpoll", test="hmode"),
        _jump("wait", test="notprompt"),
    ]
    return out


def _uac_act(plan: UacPlan, prompt_delay_ms: int, hangup_into_prompt_ms: int) -> list[str]:
    """Wait for the barge-in point (still answering BYE/MESSAGE), then press keys or hang up."""
    out = [
        _wait_bye_or_message(prompt_delay_ms, "do_act"),
        _label("do_act"),
        _jump("do_hangup", test="ishangup"),
    ]
    for code, path in sorted(plan.pcaps.items()):
        out.append(_nop(_str_eq("act", code)))
        out.append(_nop(f"<exec play_pcap_audio={quoteattr(str(path))}/>", attrs='condexec="b"'))
    out += [
        _jump("wait"),
        _label("do_hangup"),
        _nop('<assignstr assign_to="why" value="H"/>'),
        _wait_bye_or_message(max(1, hangup_into_prompt_ms - prompt_delay_ms), "bye_out"),
    ]
    return out


def _uac_hangup_timer(hangup_values: tuple[int, ...]) -> list[str]:
    """Caller hangs up ``hangup_after_ms`` after the 200 OK, answering anything meanwhile.

    A recv timeout cannot come from a variable, so each distinct value of the run gets its own
    branch with a static timeout. If a MESSAGE or other request interrupts the wait (the agent
    hung up first and the survey started), the rest of the wait polls the wall clock every 100 ms.
    """
    out = [_label("hwait"), _nop('<assignstr assign_to="why" value="hangup_after"/>')]
    for value in hangup_values:
        out.append(_nop(_str_eq("hs", str(value))))
        out.append(_jump(f"hw{value}", test="b"))
    out.append(_jump("hpoll"))
    for value in hangup_values:
        out += [_label(f"hw{value}"), _wait_bye_or_message(value, "bye_out")]
    out += [
        _label("hpoll"),
        _nop(
            '<gettimeofday assign_to="ns,nu"/>',
            '<assign assign_to="el" variable="ns"/>',
            '<subtract assign_to="el" variable="t0s"/>',
            '<multiply assign_to="el" value="1000"/>',
            '<assign assign_to="elu" variable="nu"/>',
            '<subtract assign_to="elu" variable="t0u"/>',
            '<divide assign_to="elu" value="1000"/>',
            '<add assign_to="el" variable="elu"/>',
            '<test assign_to="due" variable="el" compare="greater_than_equal" variable2="hms"/>',
        ),
        _jump("bye_out", test="due"),
        _wait_bye_or_message(100, "hpoll"),
    ]
    return out


def _uac_endings() -> list[str]:
    return [
        _label("bye_out"),
        _send(_UAC_BYE, retrans=500),
        '  <recv request="BYE" optional="true" next="bye_glare"/>',
        '  <recv response="481" optional="true" next="end_caller"/>',
        '  <recv response="200" next="end_caller"/>',
        # Both sides sent BYE at once: answer theirs, give ours a few seconds to be answered.
        _label("bye_glare"),
        _send(_OK_TO_REQUEST),
        '  <recv response="481" optional="true" timeout="4000" ontimeout="end_caller" next="end_caller"/>',
        '  <recv response="200" timeout="4000" ontimeout="end_caller" next="end_caller"/>',
        _label("remote_bye"),
        _send(_OK_TO_REQUEST),
        _nop(_log("CSAT|end|[$case]|remote_bye|[$agent]|[$cnt]")),
        _jump("done"),
        _label("end_caller"),
        _nop(_log("CSAT|end|[$case]|[$why]|[$agent]|[$cnt]")),
        _label("done"),
        _nop(),
    ]


def customer_uac_xml(plan: UacPlan, prompt_delay_ms: int = 800, hangup_into_prompt_ms: int = 1000) -> str:
    """The customer: call, wait in queue and talk, then act on every SURVEY_PROMPT MESSAGE."""
    body = (
        _uac_setup()
        + _uac_on_message(plan)
        + _uac_act(plan, prompt_delay_ms, hangup_into_prompt_ms)
        + _uac_hangup_timer(tuple(sorted(set(plan.hangup_values))))
        + _uac_endings()
    )
    return _scenario("csat customer UAC", body)


# --------------------------------------------------------------------------- agent UAS
_RESPONSE_HEAD = """[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
"""

_AGENT_BYE = """BYE [$remote_contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$local_to];tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
Call-ID: [call_id]
CSeq: 1 BYE
Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0
"""


def agent_uas_xml(talk_ms: int, ring_ms: int = 300) -> str:
    """An agent phone: ring ``ring_ms``, answer, talk ``talk_ms``, then the agent hangs up.

    A CANCEL while ringing (caller abandoned) and the caller's BYE during the talk both end the
    call cleanly, so one long-running SIPp process serves any number of queue calls.
    """
    if talk_ms <= 0 or ring_ms <= 0:
        raise ValueError("talk_ms and ring_ms must be positive")
    body = [
        '  <recv request="INVITE">'
        + _actions(
            '<ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="remote_from"/>',
            '<ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="local_to"/>',
            '<ereg regexp="sip:[^&gt;;]*" search_in="hdr" header="Contact:" check_it="true" '
            'assign_to="remote_contact"/>',
        )
        + "</recv>",
        _send("SIP/2.0 180 Ringing\n" + _RESPONSE_HEAD + "Content-Length: 0\n"),
        f'  <recv request="CANCEL" timeout="{ring_ms}" ontimeout="answer"/>',
        _send(
            "SIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n[last_CSeq:]\n"
            "Content-Length: 0\n"
        ),
        _send(
            "SIP/2.0 487 Request Terminated\n[last_Via:]\n[last_From:]\n"
            "[last_To:];tag=[pid]SIPpTag01[call_number]\n[last_Call-ID:]\nCSeq: [last_cseq_number] INVITE\n"
            "Content-Length: 0\n"
        ),
        '  <recv request="ACK" next="done"/>',
        _label("answer"),
        _send(
            "SIP/2.0 200 OK\n"
            + _RESPONSE_HEAD
            + "Content-Type: application/sdp\nContent-Length: [len]\n\n"
            + _SDP,
            retrans=500,
        ),
        '  <recv request="ACK"/>',
        f'  <recv request="BYE" timeout="{talk_ms}" ontimeout="agent_bye"/>',
        _send(_OK_TO_REQUEST),
        _jump("done"),
        _label("agent_bye"),
        _send(_AGENT_BYE, retrans=500),
        '  <recv request="BYE" optional="true" next="glare"/>',
        '  <recv response="481" optional="true" next="done"/>',
        '  <recv response="200" next="done"/>',
        _label("glare"),
        _send(_OK_TO_REQUEST),
        '  <recv response="481" optional="true" timeout="4000" ontimeout="done" next="done"/>',
        '  <recv response="200" timeout="4000" ontimeout="done" next="done"/>',
        _label("done"),
        _nop(),
    ]
    return _scenario(f"csat agent UAS talk={talk_ms}ms", body)


def _scenario(name: str, body: list[str]) -> str:
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        f"<scenario name={quoteattr(name)}>\n" + "\n".join(body) + "\n</scenario>\n"
    )
