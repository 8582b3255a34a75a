"""What a key press means for each question type: pure validation, shared by the survey leg and tests.

How callers enter answers (this is what the prompts tell them):
- csat 1–5, ces 1–7, yesno (1 = yes, 2 = no): one key; the answer is taken at once.
- nps 0–10: one or two keys; "10" is 1 then 0. The answer is taken after the second key, after
  ``#``, or after the question's timeout (so "7" then a pause is 7, "1" "0" is 10, "1#" is 1).
- ``#`` alone, or nothing, is "no input"; ``*`` and any out-of-range key are "invalid".
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.settings import QuestionType


@dataclass(frozen=True)
class Scale:
    low: int
    high: int
    max_digits: int


SCALES: dict[QuestionType, Scale] = {
    "csat": Scale(1, 5, 1),
    "ces": Scale(1, 7, 1),
    "yesno": Scale(1, 2, 1),
    "nps": Scale(0, 10, 2),
}

NO_INPUT = "no_input"
INVALID = "invalid"


@dataclass(frozen=True)
class Interpretation:
    """``value`` is set when the keys form a valid answer; otherwise ``problem`` says why not."""

    value: int | None
    problem: str | None = None


def interpret_keys(question_type: QuestionType, keys: str) -> Interpretation:
    scale = SCALES[question_type]
    keys = keys.split("#", 1)[0]  # '#' ends input; Asterisk usually strips it already
    if keys == "":
        return Interpretation(None, NO_INPUT)
    if not keys.isdigit() or len(keys) > scale.max_digits:
        return Interpretation(None, INVALID)
    if len(keys) > 1 and keys[0] == "0":  # "05" is not a number a caller means
        return Interpretation(None, INVALID)
    number = int(keys)
    if not scale.low <= number <= scale.high:
        return Interpretation(None, INVALID)
    if question_type == "yesno":
        return Interpretation(1 if number == 1 else 0)
    return Interpretation(number)
