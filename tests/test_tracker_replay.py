"""Replay real Asterisk 16 AMI transcripts (tests/fixtures/*.ami) through the call tracker and the listener.

The transcripts are byte-exact recordings of what csat's own AMI connection received during real calls
(scripts/record_transcripts.py). Each ``<name>.expected.json`` says, per caller Uniqueid, what happened on
that call: queue, agent, AgentComplete reason and outcome. Those expectations come from the recording
script's plan, Asterisk's queue_log and what the simulated caller heard, never from the tracker, so these
tests catch tracker regressions on real event streams. Ordering variations of TELEPHONY.md section 9
(AgentComplete late, after the caller's Hangup, or without DestChannel/DestUniqueid) are replayed too.

Fast: no Asterisk, no sockets (not marked ``asterisk``).
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.ami_adapter import iter_transcript_events
from ivr.ami_listener import AmiListener
from ivr.call_tracker import (
    AgentCompleted,
    AgentConnected,
    CallAbandoned,
    CallEnded,
    CallJoined,
    CallTracker,
    Effect,
    event_time,
)
from ivr.caller_hash import caller_hash
from ivr.db import make_engine
from ivr.migrate import upgrade
from ivr.models import Call
from ivr.offers import OfferService
from ivr.settings import Settings
from ivr.spool import Spool
from ivr.store import CallStore

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ("normal", "caller_hangup", "abandon", "no_agent", "concurrent")
WITH_AGENT = ("normal", "caller_hangup", "concurrent")
Event = dict[str, str]


@dataclass(frozen=True)
class Fixture:
    name: str
    events: list[Event]
    calls: dict[str, dict[str, Any]]


_cache: dict[str, Fixture] = {}


def fixture(name: str) -> Fixture:
    if name not in _cache:
        data = (FIXTURES / f"{name}.ami").read_bytes()
        expected = json.loads((FIXTURES / f"{name}.expected.json").read_text())
        _cache[name] = Fixture(name, list(iter_transcript_events(data)), expected["calls"])
    # Fresh dicts every time: a test may edit events, and the tracker must never see a mutated one.
    cached = _cache[name]
    return Fixture(name, [dict(e) for e in cached.events], cached.calls)


def replay(events: Iterable[Event]) -> dict[str, list[Effect]]:
    """Feed every event to a fresh tracker; the effects, in order, grouped by caller Uniqueid."""
    tracker = CallTracker()
    by_call: dict[str, list[Effect]] = defaultdict(list)
    for event in events:
        for effect in tracker.feed(event):
            by_call[effect.uniqueid].append(effect)
    return dict(by_call)


def of(effects: list[Effect], kind: type[Any]) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def assert_effects_match(effects: dict[str, list[Effect]], calls: dict[str, dict[str, Any]]) -> None:
    assert set(effects) == set(calls), "effects for exactly the recorded caller channels, none for agent legs"
    for uniqueid, want in calls.items():
        got = effects[uniqueid]
        where = f"{uniqueid} ({want['case_id']}, {want['outcome']}): {got}"

        (joined,) = of(got, CallJoined)
        assert (joined.queue, joined.linkedid, joined.caller_number) == (
            want["queue"],
            want["linkedid"],
            want["caller_number"],
        ), where

        connected = of(got, AgentConnected)
        if want["agent"] is None:
            assert connected == [], where
        else:
            assert [(c.agent, c.interface, c.queue) for c in connected] == [
                (want["agent"], want["agent_interface"], want["queue"])
            ], where

        completed = of(got, AgentCompleted)
        if want["complete_reason"] is None:
            assert completed == [], where
        else:
            assert [(c.reason, c.agent, c.queue) for c in completed] == [
                (want["complete_reason"], want["agent"], want["queue"])
            ], where

        assert len(of(got, CallAbandoned)) == (1 if want["outcome"] == "abandoned" else 0), where

        ended = of(got, CallEnded)
        assert ended, f"no CallEnded: {where}"
        assert ended[-1].outcome == want["outcome"], where
        assert {e.linkedid for e in ended} == {want["linkedid"]}, where
        if len(ended) > 1:
            # Only a late AgentComplete (after the caller's Hangup) may correct an earlier CallEnded.
            assert len(ended) == 2, where
            first, last = got.index(ended[0]), got.index(ended[1])
            assert of(got[first:last], AgentCompleted), (
                f"second CallEnded without a late AgentComplete: {where}"
            )
        for effect in got:
            assert effect.uniqueid == uniqueid


# -- the recordings as they are ------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_fixture_is_a_real_recording(name: str) -> None:
    data = (FIXTURES / f"{name}.ami").read_bytes()
    assert data.startswith(b"Asterisk Call Manager/"), "the banner must be part of the recording"
    assert data.endswith(b"\r\n\r\n")
    assert data.count(b"\n") == data.count(b"\r\n"), "CRLF framing kept byte for byte (no bare LF)"
    fx = fixture(name)
    assert fx.calls, "an expected file with no call proves nothing"
    assert all("Timestamp" in e for e in fx.events), (
        "timestampevents=yes: every event carries Asterisk's time"
    )


@pytest.mark.parametrize("name", NAMES)
def test_replay_matches_what_happened(name: str) -> None:
    fx = fixture(name)
    effects = replay(fx.events)
    assert_effects_match(effects, fx.calls)
    for uniqueid, got in effects.items():
        ended = of(got, CallEnded)
        caller_hangups = [e for e in fx.events if e["Event"] == "Hangup" and e.get("Uniqueid") == uniqueid]
        # Every effect's time is Asterisk's, not the replay's: CallEnded at the caller's Hangup.
        assert ended[0].at == event_time(caller_hangups[0]), uniqueid


# -- ordering variations (TELEPHONY.md section 4g and 9) ---------------------------------------------
def _caller_ids(fx: Fixture) -> set[str]:
    return set(fx.calls)


def agent_complete_after_caller_hangup(events: list[Event], callers: set[str]) -> list[Event]:
    """Each caller's AgentComplete published only after that caller's Hangup (the worst late case)."""
    late = {
        e["Uniqueid"]: e for e in events if e["Event"] == "AgentComplete" and e.get("Uniqueid") in callers
    }
    out: list[Event] = []
    for e in events:
        if e["Event"] == "AgentComplete" and e.get("Uniqueid") in late:
            continue
        out.append(e)
        if e["Event"] == "Hangup" and e.get("Uniqueid") in late:
            out.append(late.pop(e["Uniqueid"]))
    assert not late, "every moved AgentComplete found its caller's Hangup"
    return out


def swap_agent_complete_and_agent_leg_hangup(events: list[Event], callers: set[str]) -> list[Event]:
    """Each AgentComplete trades places with the agent leg's Hangup of the same call (same Linkedid):
    whichever of the two Asterisk published first now comes second. Nothing else moves.
    """
    out = list(events)
    swapped = 0
    for i, e in enumerate(events):
        if e["Event"] != "AgentComplete" or e.get("Uniqueid") not in callers:
            continue
        leg = next(
            j
            for j, o in enumerate(events)
            if o["Event"] == "Hangup"
            and o.get("Linkedid") == e.get("Linkedid")
            and o["Uniqueid"] != e["Uniqueid"]
        )
        out[i], out[leg] = out[leg], out[i]
        swapped += 1
    assert swapped == len(callers & {e["Uniqueid"] for e in events if e["Event"] == "AgentComplete"})
    return out


def without_dest_fields(events: list[Event], callers: set[str]) -> list[Event]:
    """AgentComplete without DestChannel/DestUniqueid/... (the agent snapshot was already gone)."""
    return [
        {k: v for k, v in e.items() if not k.startswith("Dest")} if e["Event"] == "AgentComplete" else e
        for e in events
    ]


def window_shuffle(events: list[Event], rng: random.Random, window: int = 8) -> list[Event]:
    """Interleave events of different channels at random within windows of ``window`` events.

    Events of one channel (Uniqueid) keep their order, as Asterisk publishes them from one channel
    thread, except AgentComplete: it floats freely (section 9), though never ahead of its AgentConnect.
    """
    out: list[Event] = []
    for start in range(0, len(events), window):
        chunk = events[start : start + window]
        perm = list(chunk)
        rng.shuffle(perm)
        pinned: dict[str, deque[Event]] = defaultdict(deque)
        for e in chunk:
            if e["Event"] != "AgentComplete":
                pinned[e.get("Uniqueid", "")].append(e)
        out += [e if e["Event"] == "AgentComplete" else pinned[e.get("Uniqueid", "")].popleft() for e in perm]
    i = 0
    while i < len(out):  # keep each AgentComplete after its AgentConnect
        e = out[i]
        connect = (
            next(
                (
                    j
                    for j in range(i + 1, len(out))
                    if out[j]["Event"] == "AgentConnect" and out[j]["Uniqueid"] == e["Uniqueid"]
                ),
                None,
            )
            if e["Event"] == "AgentComplete"
            else None
        )
        if connect is None:
            i += 1
        else:
            out.insert(connect, out.pop(i))  # lands right after the AgentConnect; re-check position i
    return out


Variation = Callable[[list[Event], set[str]], list[Event]]
VARIATIONS: dict[str, Variation] = {
    "agent_complete_after_caller_hangup": agent_complete_after_caller_hangup,
    "agent_complete_and_agent_hangup_swapped": swap_agent_complete_and_agent_leg_hangup,
    "no_dest_fields": without_dest_fields,
}


@pytest.mark.parametrize("variation", list(VARIATIONS))
@pytest.mark.parametrize("name", WITH_AGENT)
def test_ordering_variations_keep_the_outcomes(name: str, variation: str) -> None:
    fx = fixture(name)
    events = VARIATIONS[variation](fx.events, _caller_ids(fx))
    assert len(events) == len(fx.events)
    assert_effects_match(replay(events), fx.calls)


def test_late_agent_complete_corrects_a_caller_hangup() -> None:
    """Hangup before AgentComplete(Reason=caller): the first guess is after_agent; the late event fixes it."""
    fx = fixture("caller_hangup")
    effects = replay(agent_complete_after_caller_hangup(fx.events, _caller_ids(fx)))
    for uniqueid in fx.calls:
        assert [e.outcome for e in of(effects[uniqueid], CallEnded)] == ["after_agent", "caller_hung_up"]


@pytest.mark.parametrize("seed", range(20))
def test_concurrent_survives_window_shuffles(seed: int) -> None:
    fx = fixture("concurrent")
    rng = random.Random(seed)
    events = window_shuffle(fx.events, rng, window=rng.choice((4, 8, 16)))
    if seed % 2:
        events = without_dest_fields(events, _caller_ids(fx))
    assert len(events) == len(fx.events)
    assert_effects_match(replay(events), fx.calls)


def test_concurrent_with_every_variation_at_once() -> None:
    fx = fixture("concurrent")
    callers = _caller_ids(fx)
    events = window_shuffle(fx.events, random.Random(99), window=8)
    events = swap_agent_complete_and_agent_leg_hangup(events, callers)
    events = agent_complete_after_caller_hangup(without_dest_fields(events, callers), callers)
    assert_effects_match(replay(events), fx.calls)


# -- through the listener into a real store ------------------------------------------------------------
HASH_SECRET = "replay-secret"
STORED = {  # (survey_state, reason, end_reason) csat must store for each outcome, with no survey leg
    "caller_hung_up": ("not_offered", "caller_hung_up", "caller"),
    "abandoned": ("not_offered", "abandoned", "abandon"),
    "no_agent": ("not_offered", "no_agent", "no_agent"),
    # The replay has no FastAGI: offered, and the survey leg never came.
    "after_agent": ("offered", "survey_not_reached", "agent"),
}


@dataclass
class Stored:
    """An AmiListener that is never started (no socket) over a real SQLite store built by the migrations."""

    listener: AmiListener
    engine: Engine

    def feed(self, events: Iterable[Event]) -> dict[str, Call]:
        for event in events:
            self.listener.on_event(event)  # the adapter's callback: tracker.feed, then apply() per effect
        with Session(self.engine) as s:
            return {c.uniqueid: c for c in s.scalars(select(Call))}


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stored]:
    monkeypatch.chdir(tmp_path)  # no ./csat.toml
    for name in [n for n in os.environ if n.startswith("CSAT_")]:
        monkeypatch.delenv(name)
    url = f"sqlite:///{tmp_path / 'csat.sqlite3'}"
    upgrade(url)
    settings = Settings(data_dir=tmp_path, database_url=url, hash_secret=HASH_SECRET)
    engine = make_engine(url)
    store = CallStore(engine, Spool(tmp_path / "spool"))
    yield Stored(AmiListener(settings, store, OfferService(settings, store)), engine)
    engine.dispose()


def assert_rows(rows: dict[str, Call], calls: dict[str, dict[str, Any]]) -> None:
    assert set(rows) == set(calls)
    for uniqueid, want in calls.items():
        row = rows[uniqueid]
        where = f"{uniqueid} ({want['outcome']})"
        assert (row.survey_state, row.reason, row.end_reason) == STORED[want["outcome"]], where
        assert (row.queue, row.agent, row.linkedid) == (want["queue"], want["agent"], want["linkedid"]), where
        assert row.agent_interface == want["agent_interface"], where
        assert row.caller_hash == caller_hash(HASH_SECRET, want["caller_number"]), where
        assert row.joined_at is not None and row.ended_at is not None, where
        assert (row.connected_at is not None) == (want["agent"] is not None), where


@pytest.mark.parametrize("name", NAMES)
def test_listener_stores_the_outcomes(stored: Stored, name: str) -> None:
    fx = fixture(name)
    assert_rows(stored.feed(fx.events), fx.calls)


def test_listener_stores_caller_hangup_when_agent_complete_is_late(stored: Stored) -> None:
    fx = fixture("caller_hangup")
    assert_rows(stored.feed(agent_complete_after_caller_hangup(fx.events, _caller_ids(fx))), fx.calls)


def test_listener_stores_shuffled_concurrent_calls(stored: Stored) -> None:
    fx = fixture("concurrent")
    callers = _caller_ids(fx)
    events = window_shuffle(fx.events, random.Random(5), window=8)
    events = agent_complete_after_caller_hangup(without_dest_fields(events, callers), callers)
    assert_rows(stored.feed(events), fx.calls)


def test_listener_replay_is_idempotent(stored: Stored) -> None:
    """The same events twice (a fresh tracker, as after a restart) leave the same rows."""
    fx = fixture("abandon")

    def states() -> dict[str, tuple[str, str | None, str | None]]:
        rows = stored.feed(fx.events)
        return {u: (c.survey_state, c.reason, c.end_reason) for u, c in rows.items()}

    first = states()
    stored.listener.tracker = CallTracker()
    assert states() == first
