"""A pure state machine that turns AMI events into facts about queue calls. No sockets, no database.

Fed one event dict at a time (as delivered by the AMI adapter), it returns the effects the listener
must store. It follows the caller's channel (its Uniqueid) from QueueCallerJoin to Hangup; agent legs
share the caller's Linkedid but are never tracked themselves. Event order is not fixed in Asterisk 16
(AgentComplete may arrive after the caller is already in the survey, or after its Hangup), so every
effect is meaningful on its own and the store applies them idempotently.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Call outcomes carried by CallEnded.
AFTER_AGENT = "after_agent"  # the agent hung up or transferred: the survey path
CALLER_HUNG_UP = "caller_hung_up"  # the caller hung up while talking to the agent
ABANDONED = "abandoned"  # the caller hung up while waiting in the queue
NO_AGENT = "no_agent"  # the call left the queue without ever being bridged (timeout, empty queue)
LOST_DURING_OUTAGE = "ended_during_ami_outage"


@dataclass(frozen=True)
class CallJoined:
    uniqueid: str
    linkedid: str
    queue: str
    caller_number: str | None
    at: datetime


@dataclass(frozen=True)
class AgentConnected:
    uniqueid: str
    linkedid: str
    queue: str
    agent: str
    interface: str
    caller_number: str | None
    hold_seconds: int | None
    at: datetime


@dataclass(frozen=True)
class AgentCompleted:
    uniqueid: str
    linkedid: str
    queue: str
    agent: str
    interface: str
    talk_seconds: int | None
    hold_seconds: int | None
    reason: str
    at: datetime


@dataclass(frozen=True)
class CallAbandoned:
    uniqueid: str
    linkedid: str
    queue: str
    hold_seconds: int | None
    at: datetime


@dataclass(frozen=True)
class CallEnded:
    uniqueid: str
    linkedid: str
    outcome: str
    at: datetime


Effect = CallJoined | AgentConnected | AgentCompleted | CallAbandoned | CallEnded


@dataclass
class _Call:
    uniqueid: str
    linkedid: str
    queue: str
    channel: str = ""
    connected: bool = False
    hangup_requested: bool = False
    timed_out: bool = False
    ended_at: datetime | None = None
    completed_reason: str | None = None
    abandoned: bool = False
    ended: bool = False
    last_seen: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))


def event_time(event: Mapping[str, str]) -> datetime:
    """Asterisk's own ``Timestamp`` (timestampevents=yes) beats our clock: it is when it happened."""
    raw = event.get("Timestamp")
    if raw:
        try:
            return datetime.fromtimestamp(float(raw), UTC).replace(tzinfo=None)
        except ValueError:
            pass
    return datetime.now(UTC).replace(tzinfo=None)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _number(event: Mapping[str, str]) -> str | None:
    num = event.get("CallerIDNum")
    return None if num in (None, "", "<unknown>") else num


#: The only events the tracker reads; the listener can drop everything else before parsing.
TRACKED_EVENTS = frozenset(
    {
        "QueueCallerJoin",
        "AgentConnect",
        "AgentComplete",
        "QueueCallerAbandon",
        "HangupRequest",
        "SoftHangupRequest",
        "Hangup",
    }
)


class CallTracker:
    """Keeps the live queue calls; ended ones linger briefly so late AgentComplete events still match."""

    def __init__(self, ended_memory: int = 2048) -> None:
        self._calls: dict[str, _Call] = {}
        self._ended: OrderedDict[str, _Call] = OrderedDict()
        self._ended_memory = ended_memory

    @property
    def live_channels(self) -> dict[str, str]:
        """uniqueid → channel name of every call the tracker believes is still up."""
        return {u: c.channel for u, c in self._calls.items()}

    def feed(self, event: Mapping[str, str]) -> list[Effect]:
        name = event.get("Event")
        handler = _HANDLERS.get(name or "")
        if handler is None:
            return []
        uniqueid = event.get("Uniqueid")
        if not uniqueid:
            return []
        return handler(self, uniqueid, event)

    def reconcile(self, live: Iterable[str], at: datetime) -> list[Effect]:
        """After an AMI outage: calls we track that Asterisk no longer has ended while we were blind."""
        alive = set(live)
        effects: list[Effect] = []
        for uniqueid in [u for u in self._calls if u not in alive]:
            call = self._calls.pop(uniqueid)
            call.ended = True
            self._remember(call)
            effects.append(CallEnded(uniqueid, call.linkedid, _outcome(call, LOST_DURING_OUTAGE), at))
        return effects

    # -- handlers -------------------------------------------------------------------------------
    def _on_join(self, uniqueid: str, ev: Mapping[str, str]) -> list[Effect]:
        at = event_time(ev)
        linkedid = ev.get("Linkedid") or uniqueid
        queue = ev.get("Queue", "")
        call = self._calls.get(uniqueid)
        if call is None:
            call = self._calls[uniqueid] = _Call(uniqueid, linkedid, queue)
        else:  # the caller re-enters a queue (e.g. transferred to another queue)
            call.queue, call.completed_reason = queue, None
        call.last_seen, call.channel = at, ev.get("Channel", call.channel)
        return [CallJoined(uniqueid, linkedid, queue, _number(ev), at)]

    def _on_connect(self, uniqueid: str, ev: Mapping[str, str]) -> list[Effect]:
        at = event_time(ev)
        call = self._calls.get(uniqueid)
        linkedid = ev.get("Linkedid") or (call.linkedid if call else uniqueid)
        queue = ev.get("Queue", call.queue if call else "")
        if call is None:  # we missed the join (e.g. started during an AMI outage)
            call = self._calls[uniqueid] = _Call(uniqueid, linkedid, queue)
        call.connected, call.queue, call.last_seen = True, queue, at
        call.channel = ev.get("Channel", call.channel)
        return [
            AgentConnected(
                uniqueid,
                linkedid,
                queue,
                ev.get("MemberName", ""),
                ev.get("Interface", ""),
                _number(ev),
                _int(ev.get("HoldTime")),
                at,
            )
        ]

    def _on_complete(self, uniqueid: str, ev: Mapping[str, str]) -> list[Effect]:
        at = event_time(ev)
        call = self._calls.get(uniqueid) or self._ended.get(uniqueid)
        reason = ev.get("Reason", "")
        linkedid = ev.get("Linkedid") or (call.linkedid if call else uniqueid)
        effects: list[Effect] = [
            AgentCompleted(
                uniqueid,
                linkedid,
                ev.get("Queue", call.queue if call else ""),
                ev.get("MemberName", ""),
                ev.get("Interface", ""),
                _int(ev.get("TalkTime")),
                _int(ev.get("HoldTime")),
                reason,
                at,
            )
        ]
        if call is not None:
            call.connected, call.completed_reason = True, reason
            if call.ended and reason == "caller":  # Hangup came first: now we know who hung up
                effects.append(CallEnded(uniqueid, call.linkedid, CALLER_HUNG_UP, call.ended_at or at))
        return effects

    def _on_abandon(self, uniqueid: str, ev: Mapping[str, str]) -> list[Effect]:
        """Asterisk raises QueueCallerAbandon both when the caller hangs up in the queue and when the
        queue times out with the caller still on the line; only the first is an abandon, and only the
        first is preceded by a HangupRequest (the caller's BYE) or a SoftHangupRequest (hung up from
        the PBX side) on the caller's channel (measured on Asterisk 16).
        """
        at = event_time(ev)
        call = self._calls.get(uniqueid)
        linkedid = ev.get("Linkedid") or (call.linkedid if call else uniqueid)
        if call is not None and not call.hangup_requested:
            call.timed_out = True
            return []
        if call is not None:
            call.abandoned = True
        return [CallAbandoned(uniqueid, linkedid, ev.get("Queue", ""), _int(ev.get("HoldTime")), at)]

    def _on_hangup_request(self, uniqueid: str, ev: Mapping[str, str]) -> list[Effect]:
        call = self._calls.get(uniqueid)
        if call is not None:
            call.hangup_requested = True
        return []

    def _on_hangup(self, uniqueid: str, ev: Mapping[str, str]) -> list[Effect]:
        call = self._calls.pop(uniqueid, None)
        if call is None:
            return []  # an agent leg or a channel that never joined a queue
        call.ended, call.ended_at = True, event_time(ev)
        self._remember(call)
        # Bridged with no AgentComplete yet: when the caller hangs up, Asterisk publishes
        # AgentComplete(Reason=caller) before the Hangup, so a missing one means the agent side ended
        # it (the late event will correct us if not).
        return [CallEnded(uniqueid, call.linkedid, _outcome(call, AFTER_AGENT), call.ended_at)]

    def _remember(self, call: _Call) -> None:
        self._ended[call.uniqueid] = call
        while len(self._ended) > self._ended_memory:
            self._ended.popitem(last=False)


def _outcome(call: _Call, connected_unknown: str) -> str:
    if call.abandoned:
        return ABANDONED
    if not call.connected:
        return NO_AGENT
    if call.completed_reason in ("agent", "transfer"):
        return AFTER_AGENT
    if call.completed_reason == "caller":
        return CALLER_HUNG_UP
    return connected_unknown


_HANDLERS = {
    "QueueCallerJoin": CallTracker._on_join,
    "AgentConnect": CallTracker._on_connect,
    "AgentComplete": CallTracker._on_complete,
    "QueueCallerAbandon": CallTracker._on_abandon,
    "HangupRequest": CallTracker._on_hangup_request,  # the caller's BYE
    "SoftHangupRequest": CallTracker._on_hangup_request,  # hung up by Asterisk (AMI Hangup, CLI)
    "Hangup": CallTracker._on_hangup,
}
