"""95 % intervals for the figures supervisors compare: is an agent really below the team, or unlucky?

- Proportions (CSAT %, % easy, FCR %, reach %): the Wilson score interval. Unlike the textbook
  p ± z·√(p(1−p)/n) it never leaves 0–100 % and keeps its coverage for small n and for p near 0 or 1,
  which is exactly where call-centre scores live (an agent with 9 of 10 satisfied callers).
- NPS: the promoter/detractor difference of one multinomial sample. Its variance is
  (p + d − (p − d)²) / n; we compute it on counts with one pseudo-answer added to each of the three
  groups (an Agresti–Caffo-style adjustment) so that 10 of 10 promoters does not get a zero-width
  interval. The coverage test in ``tests/test_scoring_coverage.py`` checks it.
- Means (CSAT mean, CES mean): Student's t interval, mean ± t(0.975, n−1) · s / √n, clipped to the scale.

Pure maths; no numpy or scipy (the t quantile comes from the regularized incomplete beta function).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def scaled(self, factor: float) -> Interval:
        return Interval(self.low * factor, self.high * factor)


@functools.cache
def z_for(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for successes / n, as proportions (0–1)."""
    if n <= 0:
        raise ValueError("a proportion needs at least one observation")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n ({n}), got {successes}")
    z = z_for(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n)
    # Exact ends at 0 and n (the formula gives them up to rounding).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


def nps_interval(promoters: int, passives: int, detractors: int, confidence: float = 0.95) -> Interval:
    """Interval for NPS as a fraction (−1 … +1): promoters share minus detractors share."""
    n = promoters + passives + detractors
    if n <= 0:
        raise ValueError("NPS needs at least one answer")
    z = z_for(confidence)
    # Adjusted counts: one pseudo-answer per group keeps the variance positive at the extremes.
    na = n + 3
    p = (promoters + 1) / na
    d = (detractors + 1) / na
    centre = p - d
    var = (p + d - centre * centre) / na
    half = z * math.sqrt(max(var, 0.0))
    return Interval(max(-1.0, centre - half), min(1.0, centre + half))


def t_interval(
    mean: float, sd: float, n: int, confidence: float = 0.95, bounds: tuple[float, float] | None = None
) -> Interval:
    """Student's t interval for a mean; ``bounds`` clips it to the answer scale (e.g. 1–5)."""
    if n < 2:
        raise ValueError("a t interval needs at least two observations")
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return Interval(low, high)


@functools.cache
def t_quantile(p: float, df: int) -> float:
    """Inverse CDF of Student's t with ``df`` degrees of freedom, by bisection on the exact CDF.

    Cached: a report of a thousand agents asks for the same few quantiles over and over.
    """
    if not 0.0 < p < 1.0:
        raise ValueError("p must be between 0 and 1")
    if df < 1:
        raise ValueError("df must be at least 1")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def t_cdf(t: float, df: int) -> float:
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t >= 0 else tail


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) (continued fraction, Numerical Recipes 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 3e-14:
            break
    return h
