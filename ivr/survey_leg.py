"""What happens when Asterisk hands a caller to csat after the agent hung up (one FastAGI request).

The dialplan passes what the caller channel knows after ``Queue(...,c)``: the linkedid, the queue
and the agent (MEMBERNAME / MEMBERINTERFACE). This module looks up the offer made when the agent
answered (or decides now if the AMI side missed the call), checks the talk time, runs the survey
and stores each answer as it is given. Whatever happens, it tells the dialplan the result in
``CSAT_RESULT``; if csat dies before that, the dialplan plays the goodbye itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ivr.agi_channel import AgiSession
from ivr.caller_hash import caller_hash
from ivr.eligibility import apply_talk_time
from ivr.metrics import observe_dead_air
from ivr.models import SURVEY_LEG_STATES, SurveyState, utcnow
from ivr.offers import OfferService
from ivr.prompts import THANKS, question_prompts, survey_prompt_dir
from ivr.settings import QuestionConfig, Settings
from ivr.store import CallStore
from ivr.survey_script import GivenAnswer, SurveyPlan, run_survey

log = logging.getLogger("csat.survey")

_NOT_YET_IN_LEG = frozenset(s.value for s in SurveyState if s not in SURVEY_LEG_STATES)
_STARTED = frozenset({SurveyState.STARTED.value})


@dataclass(frozen=True)
class SurveyRequest:
    uniqueid: str
    linkedid: str
    queue: str
    agent: str
    interface: str
    caller_number: str | None
    test_sync: bool

    @classmethod
    def from_env(cls, env: dict[str, str]) -> SurveyRequest:
        uniqueid = env.get("agi_uniqueid", "")
        number = env.get("agi_callerid", "")
        return cls(
            uniqueid=uniqueid,
            linkedid=env.get("agi_arg_1") or uniqueid,
            queue=env.get("agi_arg_2", ""),
            agent=env.get("agi_arg_3", ""),
            interface=env.get("agi_arg_4", ""),
            caller_number=None if number in ("", "unknown") else number,
            test_sync=env.get("agi_arg_5", "") == "1",
        )


class SurveyLeg:
    def __init__(self, settings: Settings, store: CallStore, offers: OfferService) -> None:
        self._settings = settings
        self._store = store
        self._offers = offers

    def handle(self, session: AgiSession, accepted: float | None = None) -> SurveyState:
        request = SurveyRequest.from_env(session.env)
        ids = {"uniqueid": request.uniqueid, "linkedid": request.linkedid}
        if not request.uniqueid or not request.queue:
            log.error("survey request without uniqueid/queue; check the dialplan's AGI() line", extra=ids)
            session.set_variable("CSAT_RESULT", SurveyState.FAILED.value)
            return SurveyState.FAILED
        self._store.upsert_call(
            request.uniqueid,
            request.linkedid,
            queue=request.queue,
            agent=request.agent or None,
            agent_interface=request.interface or None,
            caller_hash=caller_hash(self._settings.hash_secret, request.caller_number),
        )
        offer = self._offers.get(request.uniqueid)
        if offer is None:
            offer = self._offers.decide(
                uniqueid=request.uniqueid,
                linkedid=request.linkedid,
                queue=request.queue,
                agent=request.agent,
                caller_number=request.caller_number,
                at=utcnow(),
                late=True,
            )
            talk_seconds = None
        else:
            talk_seconds = time.monotonic() - offer.connected_monotonic
        policy = self._settings.policy_for(request.queue)
        decision = apply_talk_time(offer.decision, policy, talk_seconds)
        language = self._settings.language_for(request.queue)
        survey_name, survey = self._settings.survey_for(request.queue)
        base = survey_prompt_dir(self._settings.resolved_prompts_dir, language, survey_name)
        if not decision.offer:
            self._store.set_state(
                request.uniqueid, SurveyState.NOT_OFFERED, decision.reason, only_from=_NOT_YET_IN_LEG
            )
            log.info("survey not offered", extra={**ids, "reason": decision.reason})
            session.set_variable("CSAT_RESULT", SurveyState.NOT_OFFERED.value)
            return SurveyState.NOT_OFFERED

        started_at = utcnow()
        self._store.set_state(
            request.uniqueid,
            SurveyState.STARTED,
            None,
            only_from=_NOT_YET_IN_LEG,
            survey_name=survey_name,
            survey_started_at=started_at,
        )
        log.info("survey started", extra={**ids, "queue": request.queue, "agent": request.agent})
        if request.test_sync:
            session.announce_prompt = lambda n: session.send_text(f"SURVEY_PROMPT {n} {request.agent}")  # type: ignore[method-assign]

        plan = SurveyPlan(
            questions=survey.questions,
            prompts=[
                question_prompts(self._settings.resolved_prompts_dir, language, survey_name, q)
                for q in survey.questions
            ],
            thanks=str(base / THANKS),
            goodbye=str(base / "goodbye"),
            recording_path=lambda q: self._recording_path(request.uniqueid, q),
        )

        def store_answer(given: GivenAnswer) -> None:
            self._store.add_answer(
                {
                    "call_uniqueid": request.uniqueid,
                    "linkedid": request.linkedid,
                    "queue": request.queue,
                    "agent": request.agent or None,
                    "agent_interface": request.interface or None,
                    "survey": survey_name,
                    "question": given.question.key,
                    "question_type": given.question.type,
                    "position": given.position,
                    "value": given.value,
                    "recording": given.recording,
                    "tries": given.tries,
                    "answered_at": given.answered_at,
                }
            )
            log.info(
                "answer stored",
                extra={**ids, "question": given.question.key, "value": given.value, "tries": given.tries},
            )

        observe_dead_air(accepted)  # the next command sent to Asterisk plays the first prompt
        outcome = run_survey(plan, session, store_answer)
        self._store.set_state(
            request.uniqueid,
            outcome.state,
            outcome.reason,
            only_from=_STARTED,
            survey_ended_at=utcnow(),
        )
        log.info(
            "survey ended",
            extra={
                **ids,
                "state": outcome.state.value,
                "answers": len(outcome.answers),
                "reason": outcome.reason,
            },
        )
        if outcome.reason != "caller_hung_up_during_survey":
            session.set_variable("CSAT_RESULT", outcome.state.value)
        return outcome.state

    def fail(self, session: AgiSession | None, env: dict[str, str], error: BaseException) -> None:
        """A bug or an outage inside csat: record it; the dialplan's goodbye covers the caller."""
        request = SurveyRequest.from_env(env)
        log.exception(
            "survey failed",
            extra={"uniqueid": request.uniqueid, "linkedid": request.linkedid},
            exc_info=error,
        )
        if request.uniqueid:
            self._store.set_state(
                request.uniqueid,
                SurveyState.FAILED,
                f"error:{type(error).__name__}",
                only_from=_NOT_YET_IN_LEG | _STARTED,
                survey_ended_at=utcnow(),
            )

    def _recording_path(self, uniqueid: str, question: QuestionConfig) -> Path:
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        return self._settings.recordings_dir / day / f"{uniqueid}-{question.key}.wav"
