"""AMI events → call facts (ivr.call_tracker), fed the sequences recorded from Asterisk 16.28
(TELEPHONY.md §4) including the non-deterministic orderings of §9.

Event dicts carry what the AMI adapter delivers: string headers, with Asterisk's own ``Timestamp``
(``timestampevents=yes``); every effect's ``at`` must be that time, not csat's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ivr.call_tracker import (
    ABANDONED,
    AFTER_AGENT,
    CALLER_HUNG_UP,
    LOST_DURING_OUTAGE,
    NO_AGENT,
    TRACKED_EVENTS,
    AgentCompleted,
    AgentConnected,
    CallAbandoned,
    CallEnded,
    CallJoined,
    CallTracker,
    event_time,
)

T0 = 1_700_000_000.0  # the caller's Newchannel
T0_DT = datetime(2023, 11, 14, 22, 13, 20)

U = "1700000000.0"  # caller channel
A = "1700000000.1"  # agent leg (own Uniqueid, caller's Linkedid)
CALLER = "PJSIP/customer-00000000"
AGENT_CH = "PJSIP/agent1-00000001"


def at(ms: float) -> datetime:
    return T0_DT + timedelta(milliseconds=ms)


def ev(name: str, ms: float, uniqueid: str = U, **headers: str) -> dict[str, str]:
    e = {
        "Event": name,
        "Timestamp": f"{T0 + ms / 1000:.6f}",
        "Uniqueid": uniqueid,
        "Linkedid": U,
        "Channel": CALLER if uniqueid == U else AGENT_CH,
    }
    e.update(headers)
    return e


def join(ms: float, queue: str = "support", uniqueid: str = U, **kw: str) -> dict[str, str]:
    h = {"Queue": queue, "Position": "1", "Count": "1", "CallerIDNum": "5550100", "CallerIDName": "a-001"}
    h.update(kw)
    return ev("QueueCallerJoin", ms, uniqueid, **h)


def connect(ms: float, queue: str = "support", member: str = "agent1", **kw: str) -> dict[str, str]:
    h = {
        "Queue": queue,
        "MemberName": member,
        "Interface": f"PJSIP/{member}",
        "DestChannel": AGENT_CH,
        "DestUniqueid": A,
        "HoldTime": "0",
        "RingTime": "0",
        "CallerIDNum": "5550100",
    }
    h.update(kw)
    return ev("AgentConnect", ms, **h)


def complete(ms: float, reason: str, talk: str = "4", queue: str = "support", dest: bool = True, **kw: str):
    h = {
        "Queue": queue,
        "MemberName": "agent1",
        "Interface": "PJSIP/agent1",
        "HoldTime": "0",
        "TalkTime": talk,
        "Reason": reason,
    }
    if dest:
        h.update(DestChannel=AGENT_CH, DestUniqueid=A)
    h.update(kw)
    return ev("AgentComplete", ms, **h)


def hangup(ms: float, uniqueid: str = U, cause: str = "16") -> dict[str, str]:
    return ev("Hangup", ms, uniqueid, Cause=cause, **{"Cause-txt": "Normal Clearing"})


def noise(ms: float, uniqueid: str = U) -> list[dict[str, str]]:
    """Events the tracker must not react to (it only reads TRACKED_EVENTS)."""
    return [
        ev("Newchannel", ms, uniqueid),
        ev("Newstate", ms, uniqueid, ChannelStateDesc="Up"),
        ev("MusicOnHoldStart", ms, uniqueid),
        ev("AgentCalled", ms, Queue="support", MemberName="agent1", DestChannel=AGENT_CH),
        ev("QueueCallerLeave", ms, Queue="support", Count="0"),
        ev("BridgeEnter", ms, uniqueid),
        ev("HangupRequest", ms, uniqueid, Cause="16"),
        ev("UserEvent", ms, UserEvent="SurveyStart"),
    ]


def feed_all(tracker: CallTracker, events: list[dict[str, str]]) -> list:
    out = []
    for e in events:
        out.extend(tracker.feed(e))
    return out


def joined(ms: float, queue: str = "support") -> CallJoined:
    return CallJoined(U, U, queue, "5550100", at(ms))


def connected(ms: float, queue: str = "support", member: str = "agent1") -> AgentConnected:
    return AgentConnected(U, U, queue, member, f"PJSIP/{member}", "5550100", 0, at(ms))


def completed(ms: float, reason: str, talk: int | None = 4, queue: str = "support") -> AgentCompleted:
    return AgentCompleted(U, U, queue, "agent1", "PJSIP/agent1", talk, 0, reason, at(ms))


# -- §4 sequences ---------------------------------------------------------------------------------


def test_normal_call_agent_hangs_up_then_survey() -> None:
    """§4(a): the agent's Hangup arrives after the caller is in the survey; the caller hangs up last."""
    t = CallTracker()
    effects = feed_all(
        t,
        [
            ev("Newchannel", 0),
            join(501),
            *noise(502, A),
            connect(811),
            complete(4814, "agent"),
            hangup(4816, A),  # agent leg: ignored
            ev("UserEvent", 4816, UserEvent="SurveyStart"),
            hangup(6738),
        ],
    )
    assert effects == [
        joined(501),
        connected(811),
        completed(4814, "agent"),
        CallEnded(U, U, AFTER_AGENT, at(6738)),
    ]
    assert t.live_channels == {}


def test_live_channels_while_the_call_is_up() -> None:
    t = CallTracker()
    feed_all(t, [join(501), connect(811)])
    assert t.live_channels == {U: CALLER}


def test_caller_hangs_up_first() -> None:
    """§4(b): AgentComplete Reason=caller, then Hangup customer, then Hangup agent1."""
    t = CallTracker()
    effects = feed_all(
        t,
        [
            join(501),
            connect(811),
            ev("HangupRequest", 2800),
            complete(2810, "caller", talk="2"),
            ev("SoftHangupRequest", 2812),
            hangup(2813),
            hangup(2814, A),
        ],
    )
    assert effects == [
        joined(501),
        connected(811),
        completed(2810, "caller", talk=2),
        CallEnded(U, U, CALLER_HUNG_UP, at(2813)),
    ]


def test_abandon_while_ringing() -> None:
    """§4(f): QueueCallerAbandon, the CANCELled agent leg hangs up (Cause 0), then the caller."""
    t = CallTracker()
    effects = feed_all(
        t,
        [
            join(501),
            ev("AgentCalled", 502, Queue="support", MemberName="agent1"),
            ev("HangupRequest", 6500),
            ev(
                "QueueCallerAbandon",
                6503,
                Queue="support",
                Position="1",
                OriginalPosition="1",
                HoldTime="6",
            ),
            hangup(6504, A, cause="0"),
            ev("QueueCallerLeave", 6505, Queue="support"),
            hangup(6506),
        ],
    )
    assert effects == [
        joined(501),
        CallAbandoned(U, U, "support", 6, at(6503)),
        CallEnded(U, U, ABANDONED, at(6506)),
    ]


def test_queue_timeout_abandon_event_is_not_an_abandon() -> None:
    """Asterisk 16 raises QueueCallerAbandon on a queue timeout too (caller still on the line, no
    HangupRequest before it, measured on our rig): that call never reached an agent; nobody abandoned.
    """
    t = CallTracker()
    effects = feed_all(
        t,
        [
            join(501),
            ev("QueueCallerAbandon", 4503, Queue="empty", Position="1", OriginalPosition="1", HoldTime="4"),
            ev("QueueCallerLeave", 4504, Queue="empty"),
            hangup(7000),
        ],
    )
    assert effects == [joined(501), CallEnded(U, U, NO_AGENT, at(7000))]


def test_caller_hung_up_from_the_pbx_side_in_queue_is_an_abandon() -> None:
    """An admin (AMI Hangup, CLI) ends a waiting call: SoftHangupRequest, not HangupRequest, precedes it."""
    t = CallTracker()
    effects = feed_all(
        t,
        [
            join(501),
            ev("SoftHangupRequest", 3000, Cause="5"),
            ev("QueueCallerAbandon", 3002, Queue="support", HoldTime="2"),
            hangup(3003),
        ],
    )
    assert effects == [
        joined(501),
        CallAbandoned(U, U, "support", 2, at(3002)),
        CallEnded(U, U, ABANDONED, at(3003)),
    ]


def test_no_agent_queue_timeout() -> None:
    """The call leaves the queue without ever being bridged (timeout / empty queue), then hangs up."""
    t = CallTracker()
    effects = feed_all(
        t,
        [join(501), ev("QueueCallerLeave", 30501, Queue="support"), hangup(31000)],
    )
    assert effects == [joined(501), CallEnded(U, U, NO_AGENT, at(31000))]


def test_agent_complete_after_the_survey_started() -> None:
    """§4(g): AgentComplete published after SurveyStart, still before the caller's Hangup."""
    t = CallTracker()
    effects = feed_all(
        t,
        [
            join(501),
            connect(811),
            ev("UserEvent", 4815, UserEvent="SurveyStart"),
            complete(4830, "agent", Context="survey", Exten="s", Priority="8"),
            hangup(9000),
        ],
    )
    assert effects[2:] == [completed(4830, "agent"), CallEnded(U, U, AFTER_AGENT, at(9000))]


def test_agent_complete_caller_reason_after_hangup_corrects_the_outcome() -> None:
    """§9: the caller's Hangup first, AgentComplete Reason=caller later: now we know who hung up."""
    t = CallTracker()
    feed_all(t, [join(501), connect(811)])
    t.feed(hangup(2813))
    late = t.feed(complete(2900, "caller", talk="2"))
    assert late[0] == completed(2900, "caller", talk=2)
    assert [(type(e), e.uniqueid, e.outcome) for e in late[1:]] == [(CallEnded, U, CALLER_HUNG_UP)]
    assert t.live_channels == {}  # the late event does not resurrect the call


def test_late_correction_keeps_the_hangup_time() -> None:
    t = CallTracker()
    feed_all(t, [join(501), connect(811), hangup(2813)])
    late = t.feed(complete(3900, "caller", talk="2"))
    assert late[1] == CallEnded(U, U, CALLER_HUNG_UP, at(2813))


def test_agent_complete_agent_reason_after_hangup() -> None:
    """§9: agent hangs up, the survey runs, the caller hangs up, and only then AgentComplete arrives."""
    t = CallTracker()
    feed_all(t, [join(501), connect(811)])
    ended = t.feed(hangup(9000))
    late = t.feed(complete(9010, "agent"))
    outcomes = [e.outcome for e in [*ended, *late] if isinstance(e, CallEnded)]
    assert outcomes[-1] == AFTER_AGENT


def test_agent_complete_without_dest_channel() -> None:
    """§4(g): the agent snapshot is gone: no DestChannel/DestUniqueid. Agent comes from MemberName."""
    t = CallTracker()
    feed_all(t, [join(501), connect(811)])
    effects = t.feed(complete(4814, "agent", dest=False))
    assert effects == [completed(4814, "agent")]
    assert t.feed(hangup(6738)) == [CallEnded(U, U, AFTER_AGENT, at(6738))]


def test_transfer_then_rejoin_another_queue() -> None:
    """The agent transfers the caller into another queue: same Uniqueid re-joins; a new agent answers."""
    t = CallTracker()
    effects = feed_all(
        t,
        [
            join(501),
            connect(811),
            complete(4814, "transfer"),
            join(4900, queue="billing"),
            connect(6000, queue="billing", member="agent2", HoldTime="1", Interface="PJSIP/agent2"),
            ev(
                "AgentComplete",
                9000,
                Queue="billing",
                MemberName="agent2",
                Interface="PJSIP/agent2",
                HoldTime="1",
                TalkTime="3",
                Reason="agent",
            ),
            hangup(12000),
        ],
    )
    assert effects == [
        joined(501),
        connected(811),
        completed(4814, "transfer"),
        joined(4900, queue="billing"),
        AgentConnected(U, U, "billing", "agent2", "PJSIP/agent2", "5550100", 1, at(6000)),
        AgentCompleted(U, U, "billing", "agent2", "PJSIP/agent2", 3, 1, "agent", at(9000)),
        CallEnded(U, U, AFTER_AGENT, at(12000)),
    ]


def test_rejoin_clears_the_previous_completion() -> None:
    """After a transfer into another queue, the first queue's completion must not decide the outcome."""
    t = CallTracker()
    feed_all(t, [join(501), connect(811), complete(4814, "transfer"), join(4900, queue="billing")])
    effects = feed_all(
        t,
        [
            ev("HangupRequest", 7999),
            ev("QueueCallerAbandon", 8000, Queue="billing", HoldTime="3"),
            hangup(8001),
        ],
    )
    assert effects == [
        CallAbandoned(U, U, "billing", 3, at(8000)),
        CallEnded(U, U, ABANDONED, at(8001)),
    ]


def test_agent_leg_events_are_ignored() -> None:
    t = CallTracker()
    feed_all(t, [join(501), connect(811)])
    assert t.feed(hangup(4816, A)) == []
    assert t.live_channels == {U: CALLER}  # the caller is still tracked


def test_hangup_of_an_untracked_channel_is_ignored() -> None:
    t = CallTracker()
    assert t.feed(hangup(100, "1700000099.7")) == []


@pytest.mark.parametrize("uniqueid", [None, ""])
def test_events_without_uniqueid_are_ignored(uniqueid: str | None) -> None:
    t = CallTracker()
    for e in [join(501), connect(811), complete(4814, "agent"), hangup(5000)]:
        if uniqueid is None:
            del e["Uniqueid"]
        else:
            e["Uniqueid"] = uniqueid
        assert t.feed(e) == []
    assert t.live_channels == {}


def test_untracked_event_types_are_ignored() -> None:
    t = CallTracker()
    assert feed_all(t, noise(10)) == []
    assert t.feed({"Event": "Whatever"}) == []
    assert t.feed({}) == []
    assert {
        "QueueCallerJoin",
        "AgentConnect",
        "AgentComplete",
        "QueueCallerAbandon",
        "HangupRequest",
        "SoftHangupRequest",
        "Hangup",
    } == TRACKED_EVENTS


def test_connect_without_a_join_starts_tracking() -> None:
    """The join happened during an AMI outage: AgentConnect alone is enough to follow the call."""
    t = CallTracker()
    effects = feed_all(t, [connect(811), complete(4814, "agent"), hangup(6000)])
    assert effects == [connected(811), completed(4814, "agent"), CallEnded(U, U, AFTER_AGENT, at(6000))]


def test_linkedid_defaults_to_uniqueid_and_unknown_caller_id_is_none() -> None:
    t = CallTracker()
    e = join(501, CallerIDNum="<unknown>")
    del e["Linkedid"]
    assert t.feed(e) == [CallJoined(U, U, "support", None, at(501))]


def test_missing_numbers_are_none_not_errors() -> None:
    t = CallTracker()
    t.feed(join(501))
    effects = t.feed(complete(4814, "agent", talk="", HoldTime="x"))
    assert effects == [
        AgentCompleted(U, U, "support", "agent1", "PJSIP/agent1", None, None, "agent", at(4814))
    ]


# -- reconcile after an AMI outage ----------------------------------------------------------------


def test_reconcile_ends_the_calls_asterisk_no_longer_has() -> None:
    t = CallTracker()
    u_talking, u_waiting, u_done, u_alive = "1.1", "1.2", "1.3", "1.4"
    feed_all(
        t,
        [
            ev("QueueCallerJoin", 1, u_talking, Queue="support", Linkedid=u_talking),
            ev("AgentConnect", 2, u_talking, Queue="support", MemberName="agent1", Linkedid=u_talking),
            ev("QueueCallerJoin", 3, u_waiting, Queue="support", Linkedid=u_waiting),
            ev("QueueCallerJoin", 4, u_done, Queue="support", Linkedid=u_done),
            ev("AgentConnect", 5, u_done, Queue="support", MemberName="agent2", Linkedid=u_done),
            ev(
                "AgentComplete",
                6,
                u_done,
                Queue="support",
                MemberName="agent2",
                Reason="agent",
                Linkedid=u_done,
            ),
            ev("QueueCallerJoin", 7, u_alive, Queue="support", Linkedid=u_alive),
        ],
    )
    back = datetime(2023, 11, 14, 23, 0, 0)
    effects = t.reconcile([u_alive, "9.9"], back)
    assert sorted(effects, key=lambda e: e.uniqueid) == [
        CallEnded(u_talking, u_talking, LOST_DURING_OUTAGE, back),
        CallEnded(u_waiting, u_waiting, NO_AGENT, back),
        CallEnded(u_done, u_done, AFTER_AGENT, back),
    ]
    assert set(t.live_channels) == {u_alive}
    assert t.reconcile([u_alive], back) == []  # nothing left to close
    # a late AgentComplete for a reconciled call still matches it
    late = t.feed(
        ev(
            "AgentComplete",
            9,
            u_talking,
            Queue="support",
            MemberName="agent1",
            Reason="caller",
            Linkedid=u_talking,
        )
    )
    assert late[-1] == CallEnded(u_talking, u_talking, CALLER_HUNG_UP, at(9))
    # and a Hangup for a reconciled call is not reported twice
    assert t.feed(ev("Hangup", 10, u_waiting)) == []


def test_ended_calls_are_remembered_only_up_to_the_limit() -> None:
    t = CallTracker(ended_memory=2)
    for i in range(3):
        u = f"2.{i}"
        feed_all(t, [ev("AgentConnect", i, u, Queue="q", Linkedid=u), ev("Hangup", i, u)])
    # the oldest ended call was forgotten: its late AgentComplete cannot correct anything
    old = t.feed(ev("AgentComplete", 9, "2.0", Queue="q", Reason="caller", Linkedid="2.0"))
    recent = t.feed(ev("AgentComplete", 9, "2.2", Queue="q", Reason="caller", Linkedid="2.2"))
    assert [type(e) for e in old] == [AgentCompleted]
    assert [type(e) for e in recent] == [AgentCompleted, CallEnded]


# -- time -----------------------------------------------------------------------------------------


def test_event_time_uses_the_asterisk_timestamp() -> None:
    assert event_time({"Timestamp": "1700000000.501000"}) == datetime(2023, 11, 14, 22, 13, 20, 501000)


@pytest.mark.parametrize("raw", [None, "", "not-a-number"])
def test_event_time_falls_back_to_now(raw: str | None) -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    got = event_time({} if raw is None else {"Timestamp": raw})
    after = datetime.now(UTC).replace(tzinfo=None)
    assert got.tzinfo is None
    assert before <= got <= after
