"""One offer decision per call, shared by the AMI listener (which decides when the agent answers) and the
survey leg (which asks for it when the caller arrives, and decides itself if AMI missed the call).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from ivr.caller_hash import caller_hash, sample_draw
from ivr.eligibility import Decision, OfferContext, decide_offer
from ivr.models import SurveyState
from ivr.settings import Settings
from ivr.store import CallStore

log = logging.getLogger("csat.offers")


@dataclass(frozen=True)
class Offer:
    decision: Decision
    connected_monotonic: float
    decided_late: bool


class OfferService:
    def __init__(self, settings: Settings, store: CallStore, memory: int = 10_000) -> None:
        self._settings = settings
        self._store = store
        self._offers: OrderedDict[str, Offer] = OrderedDict()
        self._lock = threading.Lock()
        self._memory = memory
        self._opted_out = {
            h for h in (caller_hash(settings.hash_secret, n) for n in settings.opt_out_numbers) if h
        }

    def decide(
        self,
        *,
        uniqueid: str,
        linkedid: str,
        queue: str,
        agent: str,
        caller_number: str | None,
        at: datetime,
        late: bool = False,
    ) -> Offer:
        """Decide once per call: a second caller (the other side of the race) gets the first decision."""
        with self._lock:
            existing = self._offers.get(uniqueid)
            if existing is not None:
                return existing
            hashed = caller_hash(self._settings.hash_secret, caller_number)
            policy = self._settings.policy_for(queue)
            ctx = OfferContext(
                queue=queue,
                agent=agent,
                caller_hash=hashed,
                at=at,
                draw=sample_draw(self._settings.hash_secret, uniqueid),
                last_surveyed_at=self._store.last_surveyed_at(hashed)
                if hashed and policy.cooldown_days
                else None,
                opted_out=hashed in self._opted_out,
                queue_excluded=queue in self._settings.excluded_queues,
            )
            decision = decide_offer(policy, ctx)
            offer = Offer(decision, time.monotonic(), late)
            self._offers[uniqueid] = offer
            while len(self._offers) > self._memory:
                self._offers.popitem(last=False)
        survey_name = self._settings.policy_for(queue).survey
        self._store.upsert_call(
            uniqueid,
            linkedid,
            queue=queue,
            agent=agent,
            caller_hash=hashed,
            offer=decision.offer,
            offer_reason=decision.reason,
            sample_draw=decision.draw,
            survey_name=survey_name if decision.offer else None,
        )
        state = SurveyState.OFFERED if decision.offer else SurveyState.NOT_OFFERED
        self._store.set_state(
            uniqueid, state, None if decision.offer else decision.reason, only_from=_BEFORE_SURVEY
        )
        log.info(
            "offer decided",
            extra={
                "uniqueid": uniqueid,
                "linkedid": linkedid,
                "queue": queue,
                "agent": agent,
                "offer": decision.offer,
                "reason": decision.reason,
                "late": late,
            },
        )
        return offer

    def get(self, uniqueid: str) -> Offer | None:
        with self._lock:
            return self._offers.get(uniqueid)


_BEFORE_SURVEY = frozenset({SurveyState.NOT_OFFERED.value, SurveyState.OFFERED.value})
