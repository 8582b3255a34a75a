"""Key presses → answers for every question type (ivr.survey_questions.interpret_keys)."""

from __future__ import annotations

import pytest

from ivr.survey_questions import INVALID, NO_INPUT, SCALES, Interpretation, interpret_keys


def valid(value: int) -> Interpretation:
    return Interpretation(value, None)


INVALID_ANSWER = Interpretation(None, INVALID)
NO_ANSWER = Interpretation(None, NO_INPUT)


def test_scales_are_the_documented_ones() -> None:
    assert {t: (s.low, s.high, s.max_digits) for t, s in SCALES.items()} == {
        "csat": (1, 5, 1),
        "ces": (1, 7, 1),
        "yesno": (1, 2, 1),
        "nps": (0, 10, 2),
    }


@pytest.mark.parametrize("value", range(1, 6))
def test_csat_accepts_1_to_5(value: int) -> None:
    assert interpret_keys("csat", str(value)) == valid(value)


@pytest.mark.parametrize("keys", ["0", "6", "9", "12", "*"])
def test_csat_rejects_out_of_range(keys: str) -> None:
    assert interpret_keys("csat", keys) == INVALID_ANSWER


@pytest.mark.parametrize("value", range(1, 8))
def test_ces_accepts_1_to_7(value: int) -> None:
    assert interpret_keys("ces", str(value)) == valid(value)


@pytest.mark.parametrize("keys", ["0", "8", "9", "10"])
def test_ces_rejects_out_of_range(keys: str) -> None:
    assert interpret_keys("ces", keys) == INVALID_ANSWER


@pytest.mark.parametrize("value", range(0, 11))
def test_nps_accepts_0_to_10(value: int) -> None:
    assert interpret_keys("nps", str(value)) == valid(value)


def test_nps_ten_is_two_keys_and_zero_is_a_real_score() -> None:
    assert interpret_keys("nps", "10") == valid(10)
    assert interpret_keys("nps", "0") == valid(0)
    assert interpret_keys("nps", "0").value == 0  # not falsy-confused with "no answer"
    assert interpret_keys("nps", "0").problem is None


@pytest.mark.parametrize("keys", ["05", "00", "01", "11", "99", "100", "010"])
def test_nps_rejects_leading_zero_and_out_of_range(keys: str) -> None:
    assert interpret_keys("nps", keys) == INVALID_ANSWER


def test_yesno_maps_1_to_yes_and_2_to_no() -> None:
    assert interpret_keys("yesno", "1") == valid(1)
    assert interpret_keys("yesno", "2") == valid(0)


@pytest.mark.parametrize("keys", ["3", "0", "9", "12"])
def test_yesno_rejects_other_keys(keys: str) -> None:
    assert interpret_keys("yesno", keys) == INVALID_ANSWER


@pytest.mark.parametrize("qtype", ["csat", "ces", "yesno", "nps"])
@pytest.mark.parametrize("keys", ["*", "*1", "1*", "A", "4a", " "])
def test_star_and_non_digits_are_invalid(qtype: str, keys: str) -> None:
    assert interpret_keys(qtype, keys) == INVALID_ANSWER  # type: ignore[arg-type]


@pytest.mark.parametrize("qtype", ["csat", "ces", "yesno", "nps"])
@pytest.mark.parametrize("keys", ["", "#", "##", "#5"])
def test_pound_alone_or_nothing_is_no_input(qtype: str, keys: str) -> None:
    assert interpret_keys(qtype, keys) == NO_ANSWER  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("qtype", "keys", "expected"),
    [
        ("nps", "1#", 1),
        ("nps", "10#", 10),
        ("nps", "7#", 7),
        ("csat", "4#", 4),
        ("yesno", "2#", 0),
        ("ces", "7#", 7),
    ],
)
def test_pound_terminates_the_answer(qtype: str, keys: str, expected: int) -> None:
    assert interpret_keys(qtype, keys) == valid(expected)  # type: ignore[arg-type]


def test_single_key_questions_refuse_two_digits_even_if_in_range_for_nps() -> None:
    assert interpret_keys("csat", "10") == INVALID_ANSWER
    assert interpret_keys("ces", "10") == INVALID_ANSWER
