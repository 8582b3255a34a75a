"""The scoring figures (scoring.figures, .intervals, .ranking, .bands) against hand-computed values.

Expected numbers are worked out by hand in the comments (or from an independent formulation, such as
the Wilson bounds as roots of a quadratic), never by calling the code under test a second time.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr.settings import QueuePolicy, ScoringSettings, Settings
from scoring.bands import Band, Flag, band_for, flag_for
from scoring.figures import (
    Estimate,
    Funnel,
    Tally,
    ces_easy_pct,
    ces_mean,
    csat_mean,
    csat_pct,
    fcr_pct,
    figures_for,
    nps,
    nps_split,
    reach_pct,
)
from scoring.intervals import nps_interval, t_interval, t_quantile, wilson
from scoring.ranking import rank

Z95 = 1.959963984540054  # the 97.5 % point of the standard normal

# The seeds' worked example: 30 callers rate 4, 50 rate 5, 112 answers in all (the other 32 are 1–3).
SEEDS_EXAMPLE = {1: 10, 2: 10, 3: 12, 4: 30, 5: 50}


def wilson_by_quadratic(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's bounds as the roots of (p̂ − p)² = z² p (1 − p) / n: a different route to the same interval."""
    p_hat = k / n
    a = 1 + z * z / n
    b = -(2 * p_hat + z * z / n)
    c = p_hat * p_hat
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


# -- CSAT %: the seeds' example and the Wilson interval -----------------------------------------------


def test_seeds_example_is_71_percent() -> None:
    est = csat_pct(SEEDS_EXAMPLE)
    assert est.n == 112
    assert est.value == pytest.approx(100 * 80 / 112)
    assert round(est.value) == 71  # "80 / 112 = 0.71 → CSAT 71"
    assert not est.insufficient


def test_seeds_example_wilson_interval() -> None:
    est = csat_pct(SEEDS_EXAMPLE)
    low, high = wilson_by_quadratic(80, 112)
    assert est.low == pytest.approx(100 * low, abs=1e-9)
    assert est.high == pytest.approx(100 * high, abs=1e-9)
    # By hand: z²/n = 3.8415/112 = 0.034299; centre = (0.714286 + 0.017149)/1.034299 = 0.707176;
    # half = 1.96·√(0.714286·0.285714/112 + 0.034299/448)/1.034299 = 0.082572 → 62.46 … 78.98 %.
    assert est.low == pytest.approx(62.46, abs=0.01)
    assert est.high == pytest.approx(78.98, abs=0.01)


@pytest.mark.parametrize(("k", "n"), [(3, 3), (240, 300), (8, 10), (1, 10), (57, 100), (399, 400)])
def test_wilson_matches_the_quadratic_roots(k: int, n: int) -> None:
    ci = wilson(k, n)
    low, high = wilson_by_quadratic(k, n)
    assert ci.low == pytest.approx(low, abs=1e-12)
    assert ci.high == pytest.approx(min(high, 1.0), abs=1e-12)


def test_wilson_ends_are_exact_at_none_and_all() -> None:
    assert wilson(0, 20).low == 0.0
    assert wilson(20, 20).high == 1.0
    # Never a zero-width interval, unlike p ± z√(p(1−p)/n): 20 of 20 still leaves room below 100 %.
    assert wilson(20, 20).low == pytest.approx(0.8389, abs=1e-4)
    assert wilson(0, 20).high == pytest.approx(1 - 0.8389, abs=1e-4)


def test_wilson_at_90_percent_confidence_is_narrower() -> None:
    z90 = 1.6448536269514722
    ci = wilson(8, 10, confidence=0.90)
    low, high = wilson_by_quadratic(8, 10, z90)
    assert (ci.low, ci.high) == (pytest.approx(low), pytest.approx(high))
    wide = wilson(8, 10)
    assert wide.low < ci.low and ci.high < wide.high


def test_wilson_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson(0, 0)
    with pytest.raises(ValueError):
        wilson(11, 10)
    with pytest.raises(ValueError):
        wilson(5, 10, confidence=1.0)


def test_csat_pct_ignores_values_outside_1_to_5() -> None:
    # 0 (a timeout), 6 and 9 cannot be CSAT answers; zero counts are no answers either.
    est = csat_pct({0: 7, 6: 4, 9: 1, 2: 2, 3: 0, 4: 8, 5: 2})
    assert est.n == 12
    assert est.value == pytest.approx(100 * 10 / 12)


# -- the minimum-n rule --------------------------------------------------------------------------------


def test_nine_answers_are_insufficient_by_default() -> None:
    est = csat_pct({5: 9})
    assert est == Estimate(None, None, None, 9)
    assert est.insufficient


def test_ten_answers_are_enough_by_default() -> None:
    est = csat_pct({5: 9, 1: 1})
    assert est.value == pytest.approx(90.0)
    assert not est.insufficient


def test_no_answers_is_not_insufficient_but_empty() -> None:
    est = csat_pct({})
    assert est == Estimate(None, None, None, 0)
    assert not est.insufficient
    assert not csat_pct({0: 5, 6: 5}).insufficient  # only out-of-scale values: no answers at all


def test_min_n_is_configurable() -> None:
    assert csat_pct({4: 3}, min_n=3).value == pytest.approx(100.0)
    assert csat_pct({4: 19}, min_n=20).insufficient
    assert nps({10: 9}).insufficient
    assert ces_mean({7: 9}).insufficient
    assert ces_easy_pct({7: 9}).insufficient
    assert fcr_pct({1: 9}).insufficient
    assert csat_mean({5: 9}).insufficient
    assert reach_pct(9, 9).insufficient


def test_the_default_min_n_is_the_configured_default() -> None:
    assert ScoringSettings().min_responses == 10


# -- CSAT mean and the t interval ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "df", "table"),
    [
        (0.975, 1, 12.706),
        (0.975, 2, 4.303),
        (0.975, 5, 2.571),
        (0.975, 9, 2.262),
        (0.975, 29, 2.045),
        (0.975, 120, 1.980),
        (0.95, 9, 1.833),
        (0.995, 9, 3.250),
        (0.995, 30, 2.750),
    ],
)
def test_t_quantile_matches_the_printed_table(p: float, df: int, table: float) -> None:
    assert t_quantile(p, df) == pytest.approx(table, abs=5e-4)


def test_t_quantile_is_symmetric_and_tends_to_the_normal() -> None:
    assert t_quantile(0.025, 9) == pytest.approx(-2.262, abs=5e-4)
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-9)
    assert t_quantile(0.975, 100_000) == pytest.approx(Z95, abs=1e-4)


def test_csat_mean_with_its_t_interval() -> None:
    # 2×3, 4×4, 4×5: mean 42/10 = 4.2; s² = (2·1.44 + 4·0.04 + 4·0.64)/9 = 5.6/9; s = 0.788811;
    # half = 2.262157·0.788811/√10 = 0.564281 → 3.6357 … 4.7643.
    est = csat_mean({3: 2, 4: 4, 5: 4})
    assert est.n == 10
    assert est.value == pytest.approx(4.2)
    assert est.low == pytest.approx(3.6357, abs=1e-4)
    assert est.high == pytest.approx(4.7643, abs=1e-4)


def test_csat_mean_interval_is_clipped_to_the_scale() -> None:
    # 9×5, 1×1: mean 4.6; s² = (9·0.16 + 12.96)/9 = 1.6; half = 2.262157·1.264911/√10 = 0.904863:
    # the upper end 5.5049 is beyond the scale and becomes 5.
    est = csat_mean({5: 9, 1: 1})
    assert est.value == pytest.approx(4.6)
    assert est.low == pytest.approx(3.6951, abs=1e-4)
    assert est.high == 5.0


def test_csat_mean_ignores_values_outside_1_to_5_and_equal_answers_give_a_point() -> None:
    est = csat_mean({5: 12, 0: 4, 7: 3})
    assert (est.value, est.low, est.high, est.n) == (5.0, 5.0, 5.0, 12)


def test_t_interval_needs_two_observations() -> None:
    with pytest.raises(ValueError):
        t_interval(4.0, 0.0, 1)
    assert csat_mean({4: 1}, min_n=1).value is None  # one answer has no spread to build an interval on


# -- NPS --------------------------------------------------------------------------------------------------


def test_nps_counts_passives_in_the_denominator() -> None:
    # 10 promoters (9–10), 5 passives (7–8), 5 detractors (0–6) of 20: 50 % − 25 % = +25.
    counts = {10: 5, 9: 5, 8: 3, 7: 2, 6: 1, 0: 4}
    split = nps_split(counts)
    assert (split.promoters, split.passives, split.detractors, split.n) == (10, 5, 5, 20)
    est = nps(counts)
    assert est.value == pytest.approx(25.0)
    # Adjusted (one pseudo-answer per group): p = 11/23, d = 6/23, centre = 5/23 = 0.217391;
    # var = (17/23 − (5/23)²)/23 = 0.030082; half = 1.96·0.173441 = 0.339939 → −12.25 … +55.73.
    assert est.low == pytest.approx(-12.254, abs=1e-3)
    assert est.high == pytest.approx(55.733, abs=1e-3)


def test_nps_of_passives_only_is_zero_and_half_passives_halve_it() -> None:
    assert nps({7: 6, 8: 6}).value == pytest.approx(0.0)
    assert nps({9: 10, 7: 10}).value == pytest.approx(50.0)


def test_nps_all_promoters_is_100_with_room_below() -> None:
    est = nps({9: 4, 10: 8})
    assert est.value == pytest.approx(100.0)
    assert est.high == pytest.approx(100.0)
    # p = 13/15, d = 1/15: centre 0.8, var = (14/15 − 0.64)/15 = 0.019556, half = 0.274082 → 52.59.
    assert est.low == pytest.approx(52.592, abs=1e-3)


def test_nps_all_detractors_is_minus_100() -> None:
    est = nps({0: 5, 6: 7})
    assert (est.value, est.low) == (pytest.approx(-100.0), pytest.approx(-100.0))
    assert est.high == pytest.approx(-52.592, abs=1e-3)


def test_nps_ignores_values_outside_0_to_10() -> None:
    est = nps({10: 10, 11: 4, -1: 2})
    assert est.n == 10
    assert est.value == pytest.approx(100.0)


def test_nps_interval_raw_fraction() -> None:
    ci = nps_interval(10, 5, 5)
    assert (ci.low, ci.high) == (pytest.approx(-0.12254, abs=1e-5), pytest.approx(0.55733, abs=1e-5))
    with pytest.raises(ValueError):
        nps_interval(0, 0, 0)


# -- CES, FCR, reach ----------------------------------------------------------------------------------------

CES_COUNTS = {7: 3, 6: 3, 5: 2, 2: 1, 1: 1, 8: 5, 0: 2}  # 8 and 0 are not on the 1–7 scale


def test_ces_mean_on_1_to_7() -> None:
    # 3×7, 3×6, 2×5, 1×2, 1×1: mean 52/10 = 5.2; s² = (9.72 + 1.92 + 0.08 + 10.24 + 17.64)/9 = 4.4;
    # half = 2.262157·2.097618/√10 = 1.500545 → 3.6995 … 6.7005 (inside 1–7, not clipped).
    est = ces_mean(CES_COUNTS)
    assert est.n == 10
    assert est.value == pytest.approx(5.2)
    assert est.low == pytest.approx(3.6995, abs=1e-4)
    assert est.high == pytest.approx(6.7005, abs=1e-4)


def test_ces_easy_pct_is_the_share_of_5_to_7() -> None:
    est = ces_easy_pct(CES_COUNTS)
    assert est.n == 10
    assert est.value == pytest.approx(80.0)
    low, high = wilson_by_quadratic(8, 10)
    assert (est.low, est.high) == (pytest.approx(100 * low), pytest.approx(100 * high))


def test_a_ces_6_or_7_is_not_a_csat_answer() -> None:
    assert csat_pct(CES_COUNTS).n == 4  # only the two 5s, the 2 and the 1
    assert ces_mean({6: 10, 7: 10}).value == pytest.approx(6.5)


def test_fcr_pct_is_the_share_of_yes() -> None:
    # Stored: yes = 1, no = 0; a stray 2 (the keypad digit for "no") is not a stored answer.
    est = fcr_pct({1: 15, 0: 5, 2: 3})
    assert est.n == 20
    assert est.value == pytest.approx(75.0)
    low, high = wilson_by_quadratic(15, 20)
    assert (est.low, est.high) == (pytest.approx(100 * low), pytest.approx(100 * high))


def test_reach_pct_is_completed_over_offered() -> None:
    est = reach_pct(30, 40)
    assert (est.value, est.n) == (pytest.approx(75.0), 40)
    low, high = wilson_by_quadratic(30, 40)
    assert (est.low, est.high) == (pytest.approx(100 * low), pytest.approx(100 * high))


def test_reach_pct_never_exceeds_100_and_needs_offers() -> None:
    assert reach_pct(50, 40).value == pytest.approx(100.0)
    none = reach_pct(0, 0)
    assert none == Estimate(None, None, None, 0) and not none.insufficient


# -- Funnel, Tally, figures_for ---------------------------------------------------------------------------


def test_funnel_add_sums_every_stage() -> None:
    a = Funnel(handled=10, eligible=8, offered=6, started=5, completed=4, partial=1, no_input=1)
    b = Funnel(handled=1, eligible=2, offered=3, started=4, completed=5, partial=6, no_input=7)
    a.add(b)
    assert a == Funnel(handled=11, eligible=10, offered=9, started=9, completed=9, partial=7, no_input=8)
    assert b == Funnel(handled=1, eligible=2, offered=3, started=4, completed=5, partial=6, no_input=7)


def test_tally_merges_answers_and_funnel() -> None:
    monday = Tally()
    monday.add_answers("csat", {5: 3, 4: 1, 2: 0})
    monday.add_answers("comment", {0: 2})
    monday.funnel = Funnel(offered=5, completed=4)
    tuesday = Tally()
    tuesday.add_answers("csat", {5: 2, 1: 1})
    tuesday.add_answers("nps", {10: 3})
    tuesday.funnel = Funnel(offered=4, completed=3)

    week = Tally()
    week.add(monday)
    week.add(tuesday)
    assert week.counts("csat") == Counter({5: 5, 4: 1, 1: 1})
    assert 2 not in week.counts("csat")  # a zero count is not stored
    assert week.counts("nps") == Counter({10: 3})
    assert week.counts("ces") == Counter()
    assert (week.funnel.offered, week.funnel.completed) == (9, 7)
    assert week.comments == 2
    # The parts are unchanged by the merge.
    assert monday.counts("csat") == Counter({5: 3, 4: 1})
    assert monday.funnel == Funnel(offered=5, completed=4)


def test_tally_responses_is_the_csat_count_else_the_largest_scored_question() -> None:
    t = Tally()
    t.add_answers("nps", {10: 12})
    t.add_answers("yesno", {1: 15, 0: 5, 2: 9})  # the 2s are not answers
    t.add_answers("comment", {0: 40})  # comments are not scored
    assert t.responses == 20
    t.add_answers("csat", {0: 30, 6: 30})  # out of scale: still no CSAT answers
    assert t.responses == 20
    t.add_answers("csat", {4: 3})
    assert t.responses == 3
    assert Tally().responses == 0


def test_figures_for_a_whole_tally() -> None:
    t = Tally()
    t.add_answers("csat", SEEDS_EXAMPLE)
    t.add_answers("nps", {10: 5, 9: 5, 8: 3, 7: 2, 6: 1, 0: 4})
    t.add_answers("ces", CES_COUNTS)
    t.add_answers("yesno", {1: 15, 0: 5})
    t.add_answers("comment", {0: 3})
    t.funnel = Funnel(handled=200, eligible=150, offered=140, started=120, completed=112)

    f = figures_for(t)
    assert f.responses == 112
    assert f.csat_pct.value == pytest.approx(100 * 80 / 112)
    # CSAT mean of the seeds' example: (10 + 20 + 36 + 120 + 250)/112 = 436/112.
    assert f.csat_mean.value == pytest.approx(436 / 112)
    assert f.nps.value == pytest.approx(25.0)
    assert f.ces_mean.value == pytest.approx(5.2)
    assert f.ces_easy_pct.value == pytest.approx(80.0)
    assert f.fcr_pct.value == pytest.approx(75.0)
    assert f.reach_pct.value == pytest.approx(100 * 112 / 140)
    assert f.funnel.handled == 200
    assert f.comments == 3


def test_figures_for_passes_min_n_to_every_figure() -> None:
    t = Tally()
    t.add_answers("csat", {5: 12})
    t.add_answers("nps", {10: 12})
    t.add_answers("ces", {7: 12})
    t.add_answers("yesno", {1: 12})
    t.funnel = Funnel(offered=12, completed=12)
    loose = figures_for(t)
    strict = figures_for(t, min_n=13)
    for name in ("csat_pct", "csat_mean", "nps", "ces_mean", "ces_easy_pct", "fcr_pct", "reach_pct"):
        assert getattr(loose, name).value is not None, name
        assert getattr(strict, name).insufficient, name


def test_figures_for_an_empty_tally() -> None:
    f = figures_for(Tally())
    assert f.responses == 0
    assert f.csat_pct == Estimate(None, None, None, 0)
    assert not f.nps.insufficient


# -- ranking ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    group: str
    responses: int
    rank_score: float | None


def row(group: str, satisfied: int, n: int, min_n: int = 10) -> Row:
    """A row scored the way reports score it: the Wilson lower bound of CSAT %."""
    est = csat_pct({5: satisfied, 1: n - satisfied}, min_n=min_n)
    return Row(group, est.n, est.low)


def test_three_of_three_never_outranks_240_of_300() -> None:
    # By default 3 answers are not enough to be ranked at all.
    assert rank([row("lucky", 3, 3), row("steady", 240, 300)]) == [None, 1]
    # Even when allowed, 3/3 (100 %, lower bound 43.9 %) ranks below 240/300 (80 %, lower bound 75.1 %).
    lucky, steady = row("lucky", 3, 3, min_n=1), row("steady", 240, 300, min_n=1)
    assert lucky.rank_score == pytest.approx(43.85, abs=0.01)
    assert steady.rank_score == pytest.approx(75.11, abs=0.01)
    assert rank([lucky, steady]) == [2, 1]
    assert rank([steady, lucky]) == [1, 2]


def test_ten_of_ten_ranks_below_240_of_300_but_thirty_of_thirty_above() -> None:
    # Lower bounds: 10/10 → 72.2 %, 240/300 → 75.1 %, 30/30 → 88.6 %: more answers do not simply win.
    rows = [row("ten", 10, 10), row("steady", 240, 300), row("thirty", 30, 30)]
    assert rank(rows) == [3, 2, 1]


def test_insufficient_rows_get_no_rank_and_take_no_place() -> None:
    rows = [row("a", 80, 100), row("new", 5, 5), row("b", 60, 100), row("silent", 0, 0)]
    assert rank(rows) == [1, None, 2, None]


def test_ties_share_a_rank_and_the_next_is_skipped() -> None:
    rows = [row("b", 40, 50), row("a", 40, 50), row("c", 30, 50), row("d", 45, 50)]
    assert rank(rows) == [2, 2, 4, 1]


def test_equal_scores_with_more_responses_rank_first() -> None:
    rows = [Row("few", 20, 70.0), Row("many", 50, 70.0), Row("same", 20, 70.0)]
    assert rank(rows) == [2, 1, 2]


def test_rank_of_nothing() -> None:
    assert rank([]) == []


# -- bands and flags ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pct", "band"),
    [
        (100.0, Band.GOOD),
        (80.0, Band.GOOD),
        (79.99, Band.FAIR),
        (60.0, Band.FAIR),
        (59.99, Band.POOR),
        (0.0, Band.POOR),
    ],
)
def test_acsi_bands(pct: float, band: Band) -> None:
    assert band_for(pct) is band


def test_bands_are_configurable_and_none_has_no_band() -> None:
    assert band_for(85.0, good_pct=90.0, poor_pct=70.0) is Band.FAIR
    assert band_for(69.0, good_pct=90.0, poor_pct=70.0) is Band.POOR
    assert band_for(None) is None
    assert band_for(csat_pct(SEEDS_EXAMPLE).value) is Band.FAIR  # 71 %
    assert [b.value for b in Band] == ["good", "fair", "poor"]


def test_flags_most_important_first() -> None:
    assert flag_for(csat_pct({}), 80.0) is Flag.NO_ANSWERS
    assert flag_for(csat_pct({}), None) is Flag.NO_ANSWERS
    assert flag_for(csat_pct({1: 9}), 80.0) is Flag.INSUFFICIENT_DATA
    assert flag_for(csat_pct(SEEDS_EXAMPLE), 80.0) is Flag.BELOW_TARGET
    assert flag_for(csat_pct(SEEDS_EXAMPLE), 70.0) is None
    assert flag_for(csat_pct(SEEDS_EXAMPLE), None) is None
    assert flag_for(csat_pct({5: 8, 1: 2}), 80.0) is None  # exactly on target is not below it
    assert [f.value for f in Flag] == ["insufficient_data", "below_target", "no_answers"]


@pytest.fixture
def _no_local_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings() must see only what the test gives it: no ./csat.toml, no CSAT_* from the shell."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CSAT_")]:
        monkeypatch.delenv(name)


@pytest.mark.usefixtures("_no_local_config")
def test_a_queue_target_overrides_the_global_one() -> None:
    settings = Settings(
        queues={"sales": QueuePolicy(csat_target_pct=90.0), "support": QueuePolicy()},
        scoring=ScoringSettings(target_pct=70.0),
    )
    assert settings.target_for("sales") == 90.0
    assert settings.target_for("support") == 70.0
    assert settings.target_for("unknown") == 70.0
    assert settings.target_for(None) == 70.0
    est = csat_pct({5: 17, 1: 3})  # 85 %
    assert flag_for(est, settings.target_for("sales")) is Flag.BELOW_TARGET
    assert flag_for(est, settings.target_for("support")) is None
    assert Settings().scoring.target_pct == 80.0
