"""The survey dialogue (ivr.survey_script.run_survey) over a scripted fake SurveyChannel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ivr.models import SurveyState
from ivr.settings import QuestionConfig
from ivr.survey_script import CallerHungUp, GivenAnswer, PromptSet, SurveyPlan, run_survey

HANGUP = object()  # in a script: the caller hangs up during this ask


class FakeChannel:
    """Records every operation in order; ``ask`` returns scripted keys or hangs up."""

    def __init__(
        self,
        keys: list[Any],
        *,
        record_bytes: int = 0,
        record_hangup: bool = False,
        hangup_on_play: frozenset[str] = frozenset(),
    ) -> None:
        self.keys = list(keys)
        self.record_bytes = record_bytes
        self.record_hangup = record_hangup
        self.hangup_on_play = hangup_on_play
        self.log: list[tuple[Any, ...]] = []

    def ask(self, prompt: str, timeout_ms: int, max_digits: int) -> str:
        self.log.append(("ask", prompt, timeout_ms, max_digits))
        if not self.keys:
            raise AssertionError(f"asked {prompt} but the script has no more key presses")
        item = self.keys.pop(0)
        if item is HANGUP:
            raise CallerHungUp()
        return item

    def play(self, prompt: str) -> None:
        self.log.append(("play", prompt))
        if prompt in self.hangup_on_play:
            raise CallerHungUp()

    def record(self, path: Path, max_seconds: int) -> bool:
        self.log.append(("record", path, max_seconds))
        if self.record_bytes:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"RIFF" + b"\0" * (self.record_bytes - 4))
        if self.record_hangup:
            raise CallerHungUp()
        return path.exists()

    def announce_prompt(self, number: int) -> None:
        self.log.append(("announce", number))

    # helpers
    def prompts(self) -> list[str]:
        """Every sound the caller heard (asks and plays), in order."""
        return [e[1] for e in self.log if e[0] in ("ask", "play")]

    def asks(self) -> list[str]:
        return [e[1] for e in self.log if e[0] == "ask"]

    def announces(self) -> list[int]:
        return [e[1] for e in self.log if e[0] == "announce"]


def q(key: str, qtype: str, **kw: Any) -> QuestionConfig:
    return QuestionConfig(key=key, type=qtype, text=f"question {key}", **kw)  # type: ignore[arg-type]


def prompts_for(key: str) -> PromptSet:
    return PromptSet(first=f"p/{key}", again_invalid=f"p/{key}-invalid", again_noinput=f"p/{key}-noinput")


def make_plan(questions: list[QuestionConfig], tmp_path: Path) -> SurveyPlan:
    return SurveyPlan(
        questions=questions,
        prompts=[prompts_for(x.key) for x in questions],
        thanks="p/thanks",
        goodbye="p/goodbye",
        recording_path=lambda question: tmp_path / "rec" / f"call-{question.key}.wav",
    )


DEFAULT = [q("csat", "csat"), q("fcr", "yesno"), q("nps", "nps")]


class Recorder:
    """on_answer callback that also notes what the caller had been asked when each answer was stored."""

    def __init__(self, channel: FakeChannel) -> None:
        self.channel = channel
        self.answers: list[GivenAnswer] = []
        self.asked_before: list[list[str]] = []

    def __call__(self, given: GivenAnswer) -> None:
        self.answers.append(given)
        self.asked_before.append(self.channel.asks())


def run(questions: list[QuestionConfig], channel: FakeChannel, tmp_path: Path) -> tuple[Any, Recorder]:
    rec = Recorder(channel)
    outcome = run_survey(make_plan(questions, tmp_path), channel, rec)
    return outcome, rec


def values(answers: list[GivenAnswer]) -> list[tuple[str, int | None, int, int]]:
    return [(a.question.key, a.value, a.tries, a.position) for a in answers]


# -- the happy path -------------------------------------------------------------------------------


def test_completed_survey(tmp_path: Path) -> None:
    ch = FakeChannel(["4", "2", "10"])
    outcome, rec = run(DEFAULT, ch, tmp_path)
    assert outcome.state == SurveyState.COMPLETED
    assert outcome.reason is None
    assert values(outcome.answers) == [("csat", 4, 1, 1), ("fcr", 0, 1, 2), ("nps", 10, 1, 3)]
    assert values(rec.answers) == values(outcome.answers)
    assert all(a.recording is None for a in outcome.answers)
    assert [e for e in ch.log if e[0] == "ask"] == [
        ("ask", "p/csat", 5000, 1),
        ("ask", "p/fcr", 5000, 1),
        ("ask", "p/nps", 5000, 2),
    ]
    assert ch.log[-1] == ("play", "p/thanks")
    assert ("play", "p/goodbye") not in ch.log
    assert (outcome.invalid_keys, outcome.silences) == (0, 0)


def test_question_timeout_is_passed_in_milliseconds(tmp_path: Path) -> None:
    ch = FakeChannel(["3"])
    run([q("ces", "ces", timeout_s=7.5)], ch, tmp_path)
    assert ch.log[1] == ("ask", "p/ces", 7500, 1)


def test_each_answer_is_stored_before_the_next_question(tmp_path: Path) -> None:
    ch = FakeChannel(["4", "1", "7"])
    _, rec = run(DEFAULT, ch, tmp_path)
    assert rec.asked_before == [["p/csat"], ["p/csat", "p/fcr"], ["p/csat", "p/fcr", "p/nps"]]


# -- invalid keys and silence ---------------------------------------------------------------------


def test_invalid_then_valid_reprompts_with_the_invalid_prompt(tmp_path: Path) -> None:
    ch = FakeChannel(["9", "4", "1", "8"])
    outcome, _ = run(DEFAULT, ch, tmp_path)
    assert ch.asks() == ["p/csat", "p/csat-invalid", "p/fcr", "p/nps"]
    assert values(outcome.answers) == [("csat", 4, 2, 1), ("fcr", 1, 1, 2), ("nps", 8, 1, 3)]
    assert outcome.state == SurveyState.COMPLETED
    assert (outcome.invalid_keys, outcome.silences) == (1, 0)


def test_silence_until_give_up_asks_exactly_tries_times_then_goodbye(tmp_path: Path) -> None:
    ch = FakeChannel(["", "", "", "5", "5"])  # keys after the give-up must never be asked for
    outcome, rec = run([q("csat", "csat", tries=3), q("fcr", "yesno")], ch, tmp_path)
    assert ch.prompts() == ["p/csat", "p/csat-noinput", "p/csat-noinput", "p/goodbye"]
    assert ch.log[-1] == ("play", "p/goodbye")
    assert ch.keys == ["5", "5"]
    assert outcome.state == SurveyState.NO_INPUT
    assert outcome.reason == "no_valid_answer:csat"
    assert outcome.answers == [] and rec.answers == []
    assert (outcome.invalid_keys, outcome.silences) == (0, 3)


@pytest.mark.parametrize("tries", [1, 2, 5])
def test_give_up_respects_the_configured_tries(tmp_path: Path, tries: int) -> None:
    ch = FakeChannel(["*"] * (tries + 3))
    outcome, _ = run([q("csat", "csat", tries=tries)], ch, tmp_path)
    assert ch.asks() == ["p/csat"] + ["p/csat-invalid"] * (tries - 1)
    assert ch.prompts()[-1] == "p/goodbye"
    assert outcome.invalid_keys == tries
    assert outcome.state == SurveyState.NO_INPUT


def test_give_up_after_a_first_answer_is_partial(tmp_path: Path) -> None:
    ch = FakeChannel(["5", "7", "", "3"])
    outcome, rec = run(DEFAULT, ch, tmp_path)
    assert ch.prompts() == ["p/csat", "p/fcr", "p/fcr-invalid", "p/fcr-noinput", "p/goodbye"]
    assert outcome.state == SurveyState.PARTIAL
    assert outcome.reason == "no_valid_answer:fcr"
    assert values(rec.answers) == [("csat", 5, 1, 1)]
    assert (outcome.invalid_keys, outcome.silences) == (2, 1)


def test_star_is_invalid_and_pound_is_no_input(tmp_path: Path) -> None:
    ch = FakeChannel(["*", "#", "3"])
    outcome, _ = run([q("csat", "csat")], ch, tmp_path)
    assert ch.asks() == ["p/csat", "p/csat-invalid", "p/csat-noinput"]
    assert values(outcome.answers) == [("csat", 3, 3, 1)]
    assert (outcome.invalid_keys, outcome.silences) == (1, 1)
    assert outcome.state == SurveyState.COMPLETED


@pytest.mark.parametrize(("keys", "value"), [("10", 10), ("0", 0), ("1#", 1), ("7", 7)])
def test_nps_values(tmp_path: Path, keys: str, value: int) -> None:
    ch = FakeChannel([keys])
    outcome, rec = run([q("nps", "nps")], ch, tmp_path)
    assert values(rec.answers) == [("nps", value, 1, 1)]
    assert outcome.state == SurveyState.COMPLETED


def test_nps_leading_zero_is_reprompted(tmp_path: Path) -> None:
    ch = FakeChannel(["05", "5"])
    outcome, _ = run([q("nps", "nps")], ch, tmp_path)
    assert ch.asks() == ["p/nps", "p/nps-invalid"]
    assert values(outcome.answers) == [("nps", 5, 2, 1)]


# -- hang-ups -------------------------------------------------------------------------------------


def test_hangup_after_question_1_keeps_answer_1(tmp_path: Path) -> None:
    ch = FakeChannel(["4", HANGUP])
    outcome, rec = run(DEFAULT, ch, tmp_path)
    assert outcome.state == SurveyState.PARTIAL
    assert outcome.reason == "caller_hung_up_during_survey"
    assert values(rec.answers) == [("csat", 4, 1, 1)]
    assert rec.asked_before == [["p/csat"]]  # stored before question 2 was asked
    assert ch.asks() == ["p/csat", "p/fcr"]
    assert ("play", "p/thanks") not in ch.log and ("play", "p/goodbye") not in ch.log
    assert ch.log[-1][0] == "ask"  # nothing is played to a caller who is gone


def test_hangup_on_the_first_question_is_no_input(tmp_path: Path) -> None:
    ch = FakeChannel([HANGUP])
    outcome, rec = run(DEFAULT, ch, tmp_path)
    assert outcome.state == SurveyState.NO_INPUT
    assert outcome.reason == "caller_hung_up_during_survey"
    assert rec.answers == []
    assert ch.prompts() == ["p/csat"]


def test_hangup_during_a_reprompt(tmp_path: Path) -> None:
    ch = FakeChannel(["3", "", HANGUP])
    outcome, rec = run(DEFAULT, ch, tmp_path)
    assert ch.asks() == ["p/csat", "p/fcr", "p/fcr-noinput"]
    assert outcome.state == SurveyState.PARTIAL
    assert values(rec.answers) == [("csat", 3, 1, 1)]


def test_hangup_during_thanks_is_still_completed(tmp_path: Path) -> None:
    ch = FakeChannel(["4", "1", "9"], hangup_on_play=frozenset({"p/thanks"}))
    outcome, rec = run(DEFAULT, ch, tmp_path)
    assert len(rec.answers) == 3
    assert outcome.state == SurveyState.COMPLETED


def test_hangup_during_goodbye_after_give_up_keeps_no_input(tmp_path: Path) -> None:
    ch = FakeChannel(["", "", ""], hangup_on_play=frozenset({"p/goodbye"}))
    outcome, _ = run([q("csat", "csat")], ch, tmp_path)
    assert outcome.state == SurveyState.NO_INPUT
    assert outcome.answers == []


# -- comments -------------------------------------------------------------------------------------


def test_comment_question_records_a_file(tmp_path: Path) -> None:
    ch = FakeChannel(["5"], record_bytes=2000)
    questions = [q("csat", "csat"), q("comment", "comment", max_record_s=20)]
    outcome, rec = run(questions, ch, tmp_path)
    path = tmp_path / "rec" / "call-comment.wav"
    assert outcome.state == SurveyState.COMPLETED
    # the question is played, then the caller is told to act as the beep-and-record starts
    assert [e[0] for e in ch.log] == ["announce", "ask", "play", "announce", "record", "play"]
    assert ch.log[2] == ("play", "p/comment")
    assert ch.log[4] == ("record", path, 20)
    assert values(rec.answers) == [("csat", 5, 1, 1), ("comment", None, 1, 2)]
    assert rec.answers[1].recording == str(path)
    assert path.stat().st_size == 2000


def test_comment_with_only_a_wav_header_is_not_stored(tmp_path: Path) -> None:
    """A silent "comment" (just a WAV header) is no answer: nothing stored, the survey still completes."""
    ch = FakeChannel([], record_bytes=44)
    outcome, rec = run([q("comment", "comment")], ch, tmp_path)
    assert outcome.state == SurveyState.COMPLETED
    assert rec.answers == []


def test_comment_not_recorded_at_all(tmp_path: Path) -> None:
    ch = FakeChannel([])
    outcome, rec = run([q("comment", "comment")], ch, tmp_path)
    assert rec.answers == [] and outcome.state == SurveyState.COMPLETED
    assert ch.log[-1] == ("play", "p/thanks")


def test_hangup_during_recording_keeps_the_comment(tmp_path: Path) -> None:
    ch = FakeChannel(["2"], record_bytes=45, record_hangup=True)
    questions = [q("csat", "csat"), q("comment", "comment"), q("nps", "nps")]
    outcome, rec = run(questions, ch, tmp_path)
    path = tmp_path / "rec" / "call-comment.wav"
    assert outcome.state == SurveyState.PARTIAL
    assert outcome.reason == "caller_hung_up_during_survey"
    assert [(a.question.key, a.recording) for a in rec.answers] == [("csat", None), ("comment", str(path))]
    assert [a.position for a in outcome.answers] == [1, 2]
    assert ch.asks() == ["p/csat"]  # question 3 never asked


def test_hangup_during_recording_without_audio_keeps_nothing(tmp_path: Path) -> None:
    ch = FakeChannel([], record_bytes=44, record_hangup=True)
    outcome, rec = run([q("comment", "comment")], ch, tmp_path)
    assert outcome.state == SurveyState.NO_INPUT
    assert rec.answers == []


def test_comment_hangup_as_only_answer_is_partial(tmp_path: Path) -> None:
    ch = FakeChannel([], record_bytes=500, record_hangup=True)
    outcome, rec = run([q("comment", "comment")], ch, tmp_path)
    assert outcome.state == SurveyState.PARTIAL
    assert len(rec.answers) == 1


# -- the test hook: prompt numbering --------------------------------------------------------------


def test_announce_prompt_counts_every_ask_including_reprompts(tmp_path: Path) -> None:
    ch = FakeChannel(["9", "", "4", "1", "*", "10"], record_bytes=100)
    questions = [*DEFAULT, q("comment", "comment")]
    run(questions, ch, tmp_path)
    assert ch.announces() == [1, 2, 3, 4, 5, 6, 7]
    # each announce comes right before the prompt it numbers (for a comment: before the recording)
    pairs = [(ch.log[i][1], ch.log[i + 1][1]) for i in range(len(ch.log) - 1) if ch.log[i][0] == "announce"]
    assert pairs == [
        (1, "p/csat"),
        (2, "p/csat-invalid"),
        (3, "p/csat-noinput"),
        (4, "p/fcr"),
        (5, "p/nps"),
        (6, "p/nps-invalid"),
        (7, tmp_path / "rec" / "call-comment.wav"),
    ]
    assert ("announce", 8) not in ch.log  # thanks is not a numbered prompt


def test_plan_with_mismatched_prompts_is_refused(tmp_path: Path) -> None:
    plan = make_plan(DEFAULT, tmp_path)
    broken = SurveyPlan(
        questions=plan.questions,
        prompts=plan.prompts[:2],
        thanks=plan.thanks,
        goodbye=plan.goodbye,
        recording_path=plan.recording_path,
    )
    stored: list[GivenAnswer] = []
    on_answer: Callable[[GivenAnswer], None] = stored.append
    with pytest.raises(ValueError):
        run_survey(broken, FakeChannel(["1", "1", "1"]), on_answer)
