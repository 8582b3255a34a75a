"""The scores, from value counts: pure functions that know nothing of databases or files.

Everything works on *value counts* (how many answers of each value), never on answer rows, because
that is what the daily rollups hold: a report over two years reads counts, not ten million rows.

Formulas (``../shared/SEEDS.md``):
- CSAT % = answers rated 4 or 5 ÷ all 1–5 answers × 100 (80 of 112 → 71 %); the CSAT mean as well.
- NPS = % promoters (9–10) − % detractors (0–6), over 0–10 answers; −100 … +100.
- CES: mean on 1–7 and % easy (5–7).
- FCR % = share of "yes" (stored as 1; "no" is 0).
- Reach % = completed ÷ offered surveys.

A figure computed from fewer than ``min_responses`` answers is *insufficient*: its value is ``None``
(shown as "insufficient data"), because three unlucky calls say nothing about an agent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from scoring.intervals import Interval, nps_interval, t_interval, wilson

Counts = Mapping[int, int]

CSAT_SCALE = (1, 5)
CES_SCALE = (1, 7)
NPS_SCALE = (0, 10)
YESNO_SCALE = (0, 1)

SCALES: dict[str, tuple[int, int]] = {
    "csat": CSAT_SCALE,
    "ces": CES_SCALE,
    "nps": NPS_SCALE,
    "yesno": YESNO_SCALE,
}


@dataclass(frozen=True)
class Estimate:
    """A figure with its 95 % interval; ``value`` is None when n is below the minimum (or zero)."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    @property
    def insufficient(self) -> bool:
        return self.value is None and self.n > 0

    @classmethod
    def none(cls, n: int) -> Estimate:
        return cls(None, None, None, n)


def in_scale(counts: Counts, scale: tuple[int, int]) -> dict[int, int]:
    """The counts within the scale, in value order (so float sums do not depend on how counts arrived)."""
    low, high = scale
    return {v: counts[v] for v in sorted(counts) if low <= v <= high and counts[v] > 0}


def _proportion(successes: int, n: int, min_n: int, confidence: float) -> Estimate:
    if n == 0 or n < min_n:
        return Estimate.none(n)
    ci = wilson(successes, n, confidence)
    return Estimate(100.0 * successes / n, 100.0 * ci.low, 100.0 * ci.high, n)


def share(
    counts: Counts, scale: tuple[int, int], top: tuple[int, int], min_n: int, confidence: float
) -> Estimate:
    """Share (0–100) of answers within ``top`` among all answers within ``scale``."""
    valid = in_scale(counts, scale)
    n = sum(valid.values())
    hits = sum(c for v, c in valid.items() if top[0] <= v <= top[1])
    return _proportion(hits, n, min_n, confidence)


def csat_pct(counts: Counts, min_n: int = 10, confidence: float = 0.95) -> Estimate:
    return share(counts, CSAT_SCALE, (4, 5), min_n, confidence)


def ces_easy_pct(counts: Counts, min_n: int = 10, confidence: float = 0.95) -> Estimate:
    return share(counts, CES_SCALE, (5, 7), min_n, confidence)


def fcr_pct(counts: Counts, min_n: int = 10, confidence: float = 0.95) -> Estimate:
    return share(counts, YESNO_SCALE, (1, 1), min_n, confidence)


def reach_pct(completed: int, offered: int, min_n: int = 10, confidence: float = 0.95) -> Estimate:
    return _proportion(min(completed, offered), offered, min_n, confidence)


def mean(counts: Counts, scale: tuple[int, int], min_n: int = 10, confidence: float = 0.95) -> Estimate:
    """Mean with a t interval clipped to the scale. With every answer equal the interval is a point."""
    valid = in_scale(counts, scale)
    n = sum(valid.values())
    if n == 0 or n < min_n or n < 2:
        return Estimate.none(n)
    avg = sum(v * c for v, c in valid.items()) / n
    var = sum(c * (v - avg) ** 2 for v, c in valid.items()) / (n - 1)
    ci = t_interval(avg, math.sqrt(var), n, confidence, bounds=(float(scale[0]), float(scale[1])))
    return Estimate(avg, ci.low, ci.high, n)


def csat_mean(counts: Counts, min_n: int = 10, confidence: float = 0.95) -> Estimate:
    return mean(counts, CSAT_SCALE, min_n, confidence)


def ces_mean(counts: Counts, min_n: int = 10, confidence: float = 0.95) -> Estimate:
    return mean(counts, CES_SCALE, min_n, confidence)


@dataclass(frozen=True)
class NpsSplit:
    promoters: int
    passives: int
    detractors: int

    @property
    def n(self) -> int:
        return self.promoters + self.passives + self.detractors


def nps_split(counts: Counts) -> NpsSplit:
    valid = in_scale(counts, NPS_SCALE)
    return NpsSplit(
        promoters=sum(c for v, c in valid.items() if v >= 9),
        passives=sum(c for v, c in valid.items() if 7 <= v <= 8),
        detractors=sum(c for v, c in valid.items() if v <= 6),
    )


def nps(counts: Counts, min_n: int = 10, confidence: float = 0.95) -> Estimate:
    """NPS on −100 … +100 with its interval."""
    split = nps_split(counts)
    n = split.n
    if n == 0 or n < min_n:
        return Estimate.none(n)
    value = 100.0 * (split.promoters - split.detractors) / n
    ci: Interval = nps_interval(split.promoters, split.passives, split.detractors, confidence).scaled(100.0)
    # The adjusted interval is centred slightly towards 0; it must still contain the point estimate.
    return Estimate(value, min(ci.low, value), max(ci.high, value), n)


@dataclass
class Funnel:
    """Survey funnel for a group: how many calls got how far. Reach % = completed ÷ offered."""

    handled: int = 0
    eligible: int = 0
    offered: int = 0
    started: int = 0
    completed: int = 0
    partial: int = 0
    no_input: int = 0

    def add(self, other: Funnel) -> None:
        for name in FUNNEL_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


FUNNEL_FIELDS = ("handled", "eligible", "offered", "started", "completed", "partial", "no_input")


@dataclass
class Tally:
    """Everything the figures need for one group (an agent, a queue, a team, a week…).

    ``answers`` maps a question type (csat, nps, ces, yesno, comment) to value counts; comments have
    no value and are counted under the key 0 so that reports can say how many there were.
    """

    answers: dict[str, Counter[int]] = field(default_factory=dict)
    funnel: Funnel = field(default_factory=Funnel)

    def add_answers(self, question_type: str, value_counts: Counts) -> None:
        nonzero = {v: c for v, c in value_counts.items() if c}
        bucket = self.answers.get(question_type)
        if bucket is None:
            # A new bucket takes the counts as they are: dict.update is C, Counter.update a Python loop.
            bucket = self.answers[question_type] = Counter()
            dict.update(bucket, nonzero)
        else:
            bucket.update(nonzero)

    def add(self, other: Tally) -> None:
        for qtype, counts in other.answers.items():
            self.add_answers(qtype, counts)
        self.funnel.add(other.funnel)

    def counts(self, question_type: str) -> Counter[int]:
        return self.answers.get(question_type, Counter())

    @property
    def responses(self) -> int:
        """Scored answers to the headline question: CSAT if the group has any, else the largest."""
        csat = self.answers.get("csat")
        if csat:
            n = sum(c for v, c in csat.items() if 1 <= v <= 5)
            if n:
                return n
        scored = [sum(in_scale(c, SCALES[t]).values()) for t, c in self.answers.items() if t in SCALES]
        return max(scored, default=0)

    @property
    def comments(self) -> int:
        return sum(self.counts("comment").values())


@dataclass(frozen=True)
class GroupFigures:
    responses: int
    csat_pct: Estimate
    csat_mean: Estimate
    nps: Estimate
    ces_mean: Estimate
    ces_easy_pct: Estimate
    fcr_pct: Estimate
    reach_pct: Estimate
    funnel: Funnel
    comments: int


def figures_for(tally: Tally, min_n: int = 10, confidence: float = 0.95) -> GroupFigures:
    return GroupFigures(
        responses=tally.responses,
        csat_pct=csat_pct(tally.counts("csat"), min_n, confidence),
        csat_mean=csat_mean(tally.counts("csat"), min_n, confidence),
        nps=nps(tally.counts("nps"), min_n, confidence),
        ces_mean=ces_mean(tally.counts("ces"), min_n, confidence),
        ces_easy_pct=ces_easy_pct(tally.counts("ces"), min_n, confidence),
        fcr_pct=fcr_pct(tally.counts("yesno"), min_n, confidence),
        reach_pct=reach_pct(tally.funnel.completed, tally.funnel.offered, min_n, confidence),
        funnel=tally.funnel,
        comments=tally.comments,
    )
