"""``figures_for_many`` must give exactly what ``figures_for`` gives, tally by tally (a property test)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from scoring.figures import Estimate, Funnel, GroupFigures, Tally, figures_for
from scoring.figures_batch import figures_for_many

ESTIMATES = ("csat_pct", "csat_mean", "nps", "ces_mean", "ces_easy_pct", "fcr_pct", "reach_pct")
SCALES = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7), "yesno": (0, 1)}


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _assert_same(got: GroupFigures, want: GroupFigures, where: str) -> None:
    assert got.responses == want.responses, where
    assert got.comments == want.comments, where
    assert got.funnel == want.funnel, where
    for name in ESTIMATES:
        g: Estimate = getattr(got, name)
        w: Estimate = getattr(want, name)
        assert g.n == w.n, f"{where} {name}: n {g.n} != {w.n}"
        for part in ("value", "low", "high"):
            assert _close(getattr(g, part), getattr(w, part)), f"{where} {name}.{part}: {g} != {w}"


def _counter(rng: random.Random, qtype: str) -> Counter[int]:
    lo, hi = SCALES[qtype]
    kind = rng.random()
    counts: Counter[int] = Counter()
    if kind < 0.1:
        return counts  # present but empty
    if kind < 0.25:
        counts[rng.randint(lo, hi)] = rng.choice([1, 2, 3, 10, 40])  # all answers equal
        return counts
    size = rng.choice([1, 2, 3, 5, 9, 12, 30, 80, 400])
    for _ in range(rng.randint(1, hi - lo + 1)):
        counts[rng.randint(lo, hi)] += rng.randint(0, size)
    if rng.random() < 0.1:
        counts[rng.choice([-1, hi + 1, 11, 99])] += rng.randint(1, 5)  # outside the scale: ignored
    if rng.random() < 0.05:
        counts[rng.randint(lo, hi)] = 0  # a zero count
    return counts


def _tally(rng: random.Random) -> Tally:
    tally = Tally()
    if rng.random() < 0.05:
        return tally  # empty
    for qtype in SCALES:
        if rng.random() < 0.7:
            tally.answers[qtype] = _counter(rng, qtype)
    if rng.random() < 0.4:
        tally.answers["comment"] = Counter({0: rng.randint(0, 30)})
    offered = rng.choice([0, 0, 1, 2, 5, 9, 10, 11, 50, 300])
    completed = rng.choice([0, offered, rng.randint(0, offered), offered + rng.randint(1, 5)])
    tally.funnel = Funnel(
        handled=offered * 2, eligible=offered + 1, offered=offered, started=completed, completed=completed
    )
    return tally


def _tallies(seed: int, count: int) -> list[Tally]:
    rng = random.Random(seed)
    return [_tally(rng) for _ in range(count)]


@pytest.mark.parametrize("confidence", [0.95, 0.9])
@pytest.mark.parametrize("min_n", [1, 5, 10])
def test_figures_for_many_equals_figures_for(min_n: int, confidence: float) -> None:
    tallies = _tallies(seed=20240 + min_n, count=3000)
    got = figures_for_many(tallies, min_n, confidence)
    want = [figures_for(t, min_n, confidence) for t in tallies]
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        _assert_same(g, w, f"tally {i} ({tallies[i].answers}, {tallies[i].funnel})")
        assert g.funnel is tallies[i].funnel


def test_figures_for_many_of_nothing() -> None:
    assert figures_for_many([], 10, 0.95) == []


def test_figures_for_many_edge_tallies() -> None:
    tallies = [
        Tally(),
        Tally(answers={"csat": Counter({5: 1})}),
        Tally(answers={"csat": Counter({5: 2})}),
        Tally(answers={"csat": Counter({3: 10}), "nps": Counter({10: 10})}),
        Tally(answers={"nps": Counter({0: 10})}, funnel=Funnel(offered=10, completed=0)),
        Tally(answers={"yesno": Counter({1: 10})}, funnel=Funnel(offered=10, completed=10)),
        Tally(answers={"ces": Counter({7: 3, 1: 3})}, funnel=Funnel(offered=3, completed=30)),
        Tally(answers={"comment": Counter({0: 4})}),
    ]
    for min_n in (0, 1, 2, 10):
        got = figures_for_many(tallies, min_n, 0.95)
        for i, (g, w) in enumerate(zip(got, [figures_for(t, min_n, 0.95) for t in tallies], strict=True)):
            _assert_same(g, w, f"edge tally {i}, min_n {min_n}")
