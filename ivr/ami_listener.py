"""Glue between the AMI adapter and the rest: events go through the call tracker, effects go to the store.

Runs on the adapter's single dispatcher thread, so effects are applied in event order. After every
(re)connect it asks Asterisk which channels are alive and lets the tracker close the calls that
ended while csat was not listening.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ivr.ami_adapter import AmiCredentials, AmiError, AmiSupervisor
from ivr.call_tracker import (
    ABANDONED,
    AFTER_AGENT,
    CALLER_HUNG_UP,
    NO_AGENT,
    TRACKED_EVENTS,
    AgentCompleted,
    AgentConnected,
    CallAbandoned,
    CallEnded,
    CallJoined,
    CallTracker,
    Effect,
)
from ivr.caller_hash import caller_hash
from ivr.models import SURVEY_LEG_STATES, SurveyState, utcnow
from ivr.offers import OfferService
from ivr.settings import Settings
from ivr.store import CallStore

log = logging.getLogger("csat.listener")

_BEFORE_SURVEY = frozenset(s.value for s in SurveyState if s not in SURVEY_LEG_STATES)
_OFFERED_ONLY = frozenset({SurveyState.OFFERED.value})


class AmiListener:
    def __init__(self, settings: Settings, store: CallStore, offers: OfferService) -> None:
        self._settings = settings
        self._store = store
        self._offers = offers
        self.tracker = CallTracker()
        self.connected = False
        self.supervisor = AmiSupervisor(
            AmiCredentials(settings.ami.host, settings.ami.port, settings.ami.username, settings.ami.secret),
            on_event=self.on_event,
            on_connected=self.on_connected,
            on_disconnected=self.on_disconnected,
            ping_interval=settings.ami.ping_interval_s,
            transcript_path=settings.ami.transcript_path,
            events=TRACKED_EVENTS,
        )

    def start(self) -> None:
        self.supervisor.start()

    def stop(self) -> None:
        self.supervisor.stop()

    # -- adapter callbacks (dispatcher thread) --------------------------------------------------
    def on_event(self, event: Mapping[str, str]) -> None:
        for effect in self.tracker.feed(event):
            self.apply(effect)

    def on_connected(self) -> None:
        self.connected = True
        log.info("AMI connected", extra={"host": self._settings.ami.host, "port": self._settings.ami.port})
        try:
            live = self._live_uniqueids()
        except AmiError as exc:
            log.warning("could not list live channels after connect", extra={"error": str(exc)})
            return
        for effect in self.tracker.reconcile(live, utcnow()):
            self.apply(effect)

    def on_disconnected(self, reason: str) -> None:
        self.connected = False
        log.warning("AMI disconnected", extra={"reason": reason})

    def _live_uniqueids(self) -> set[str]:
        """Which tracked calls are still up: ``Getvar`` per channel needs only the ``call`` write class
        (``Command``/``CoreShowChannels`` would need far more), and there are only as many as live calls.
        """
        live = set()
        for uniqueid, channel in self.tracker.live_channels.items():
            if not channel:
                live.add(uniqueid)  # cannot check: keep it
                continue
            response = self.supervisor.send_action("Getvar", Channel=channel, Variable="UNIQUEID")
            if response.get("Response") == "Success" and response.get("Value") == uniqueid:
                live.add(uniqueid)
        return live

    # -- effects -> store -----------------------------------------------------------------------
    def apply(self, effect: Effect) -> None:
        ids = {"uniqueid": effect.uniqueid, "linkedid": effect.linkedid}
        if isinstance(effect, CallJoined):
            self._store.upsert_call(
                effect.uniqueid,
                effect.linkedid,
                queue=effect.queue,
                joined_at=effect.at,
                caller_hash=caller_hash(self._settings.hash_secret, effect.caller_number),
            )
        elif isinstance(effect, AgentConnected):
            self._store.upsert_call(
                effect.uniqueid,
                effect.linkedid,
                queue=effect.queue,
                agent=effect.agent,
                agent_interface=effect.interface,
                connected_at=effect.at,
                hold_seconds=effect.hold_seconds,
            )
            self._offers.decide(
                uniqueid=effect.uniqueid,
                linkedid=effect.linkedid,
                queue=effect.queue,
                agent=effect.agent,
                caller_number=effect.caller_number,
                at=effect.at,
            )
        elif isinstance(effect, AgentCompleted):
            # A transferred call counts for the agent who completed it.
            self._store.upsert_call(
                effect.uniqueid,
                effect.linkedid,
                agent=effect.agent or None,
                agent_interface=effect.interface or None,
                talk_seconds=effect.talk_seconds,
                end_reason=effect.reason or None,
            )
        elif isinstance(effect, CallAbandoned):
            self._store.upsert_call(
                effect.uniqueid, effect.linkedid, end_reason="abandon", hold_seconds=effect.hold_seconds
            )
        elif isinstance(effect, CallEnded):
            self._end(effect)
        log.debug("effect", extra={**ids, "effect": type(effect).__name__})

    def _end(self, effect: CallEnded) -> None:
        self._store.upsert_call(effect.uniqueid, effect.linkedid, ended_at=effect.at)
        if effect.outcome in (CALLER_HUNG_UP, ABANDONED, NO_AGENT):
            end_reason = {CALLER_HUNG_UP: "caller", ABANDONED: "abandon", NO_AGENT: "no_agent"}[
                effect.outcome
            ]
            self._store.upsert_call(effect.uniqueid, effect.linkedid, end_reason=end_reason)
            self._store.set_state(
                effect.uniqueid, SurveyState.NOT_OFFERED, effect.outcome, only_from=_BEFORE_SURVEY
            )
        elif effect.outcome == AFTER_AGENT:
            # Offered, but the survey leg never ran (csat's FastAGI was unreachable): say so.
            self._store.set_state(
                effect.uniqueid, SurveyState.OFFERED, "survey_not_reached", only_from=_OFFERED_ONLY
            )
        else:
            self._store.set_state(
                effect.uniqueid, SurveyState.OFFERED, effect.outcome, only_from=_OFFERED_ONLY
            )
        log.info(
            "call ended",
            extra={"uniqueid": effect.uniqueid, "linkedid": effect.linkedid, "outcome": effect.outcome},
        )
