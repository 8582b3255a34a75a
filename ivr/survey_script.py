"""The survey dialogue: questions, retries, give-up and goodbye, over an abstract channel.

Knows nothing of AGI or sockets; the survey leg gives it a :class:`SurveyChannel` (pyst2 in
production, a scripted fake in unit tests) and a callback that stores each answer the moment it is
given, so a caller who hangs up after question 1 keeps answer 1.

Rules a caller can rely on: every question is asked at most ``tries`` times (invalid keys and
silence both count); after that the survey ends with a goodbye, never a loop; every pause is
covered by a prompt, never dead air.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from ivr.models import SurveyState, utcnow
from ivr.settings import QuestionConfig
from ivr.survey_questions import INVALID, NO_INPUT, SCALES, interpret_keys


class CallerHungUp(Exception):
    """The caller left; what was answered so far is kept (``kept`` is a comment cut by the hang-up)."""

    def __init__(self, message: str = "caller hung up", kept: GivenAnswer | None = None) -> None:
        super().__init__(message)
        self.kept = kept


class SurveyChannel(Protocol):
    def ask(self, prompt: str, timeout_ms: int, max_digits: int) -> str:
        """Play ``prompt`` (barge-in allowed) and return the keys pressed ('' for none)."""

    def play(self, prompt: str) -> None: ...

    def record(self, path: Path, max_seconds: int) -> bool:
        """Record a voice comment after a beep, ended by '#' or ``max_seconds``."""

    def announce_prompt(self, number: int) -> None:
        """Test hook: tells a simulated caller a prompt is starting (a no-op in production)."""


@dataclass(frozen=True)
class PromptSet:
    """Asterisk sound names (paths without extension) for one question."""

    first: str
    again_invalid: str
    again_noinput: str


@dataclass(frozen=True)
class GivenAnswer:
    question: QuestionConfig
    position: int
    value: int | None
    recording: str | None
    tries: int
    answered_at: datetime


@dataclass
class SurveyOutcome:
    state: SurveyState
    answers: list[GivenAnswer] = field(default_factory=list)
    reason: str | None = None
    invalid_keys: int = 0
    silences: int = 0


@dataclass(frozen=True)
class SurveyPlan:
    questions: Sequence[QuestionConfig]
    prompts: Sequence[PromptSet]
    thanks: str
    goodbye: str
    recording_path: Callable[[QuestionConfig], Path]


def run_survey(
    plan: SurveyPlan, channel: SurveyChannel, on_answer: Callable[[GivenAnswer], None]
) -> SurveyOutcome:
    """Ask every question in order; ``on_answer`` runs before the next question is asked."""
    outcome = SurveyOutcome(SurveyState.STARTED)
    prompt_counter = 0
    try:
        for position, (question, prompts) in enumerate(
            zip(plan.questions, plan.prompts, strict=True), start=1
        ):
            given, prompt_counter = _ask_one(
                question, prompts, position, channel, outcome, prompt_counter, plan
            )
            if given is None:
                outcome.state = SurveyState.PARTIAL if outcome.answers else SurveyState.NO_INPUT
                outcome.reason = f"no_valid_answer:{question.key}"
                channel.play(plan.goodbye)
                return outcome
            if given.question.type == "comment" and given.recording is None:
                continue  # the caller left no message: nothing to store, the survey goes on
            outcome.answers.append(given)
            on_answer(given)
        outcome.state = SurveyState.COMPLETED
        with contextlib.suppress(CallerHungUp):  # leaving during "thank you" is still a completed survey
            channel.play(plan.thanks)
        return outcome
    except CallerHungUp as hangup:
        if hangup.kept is not None:
            outcome.answers.append(hangup.kept)
            on_answer(hangup.kept)
        outcome.state = SurveyState.PARTIAL if outcome.answers else SurveyState.NO_INPUT
        outcome.reason = "caller_hung_up_during_survey"
        return outcome


def _ask_one(
    question: QuestionConfig,
    prompts: PromptSet,
    position: int,
    channel: SurveyChannel,
    outcome: SurveyOutcome,
    prompt_counter: int,
    plan: SurveyPlan,
) -> tuple[GivenAnswer | None, int]:
    if question.type == "comment":
        channel.play(prompts.first)
        prompt_counter += 1
        channel.announce_prompt(prompt_counter)  # the caller can act once the beep-and-record starts
        path = plan.recording_path(question)
        try:
            kept = channel.record(path, question.max_record_s)
        except CallerHungUp as hangup:
            if _has_audio(path):  # a comment cut by the hang-up is still a comment
                raise CallerHungUp(
                    kept=GivenAnswer(question, position, None, str(path), 1, utcnow())
                ) from hangup
            raise
        recording = str(path) if kept and _has_audio(path) else None
        return GivenAnswer(question, position, None, recording, 1, utcnow()), prompt_counter

    scale = SCALES[question.type]
    prompt = prompts.first
    for attempt in range(1, question.tries + 1):
        prompt_counter += 1
        channel.announce_prompt(prompt_counter)
        keys = channel.ask(prompt, int(question.timeout_s * 1000), scale.max_digits)
        result = interpret_keys(question.type, keys)
        if result.value is not None:
            return GivenAnswer(question, position, result.value, None, attempt, utcnow()), prompt_counter
        if result.problem == INVALID:
            outcome.invalid_keys += 1
            prompt = prompts.again_invalid
        elif result.problem == NO_INPUT:
            outcome.silences += 1
            prompt = prompts.again_noinput
    return None, prompt_counter


def _has_audio(path: Path) -> bool:
    """A WAV file longer than its 44-byte header holds at least some sound."""
    return path.exists() and path.stat().st_size > 44
