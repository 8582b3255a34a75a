"""``figures_for`` for many groups at once, vectorised with numpy over value-count arrays.

``figures_for_many(tallies, min_n, confidence)`` returns the same list as
``[figures_for(t, min_n, confidence) for t in tallies]`` (same rules, same floats up to rounding, in
practice bit for bit) but does the arithmetic column-wise over an N×11 count matrix per question type
instead of one Counter at a time. The only per-tally Python work left is reading the Counters and
building the result objects.

Every rule of ``scoring.figures`` / ``scoring.intervals`` is mirrored here:

- only values within the scale and with a positive count are answers (``in_scale``);
- a share needs n > 0 and n ≥ min_n; a mean also needs n ≥ 2; otherwise ``Estimate.none(n)``;
- Wilson with exact ends at 0 and n; NPS with the adjusted interval widened to contain the point;
  the t interval clipped to the scale, with ``t_quantile`` asked once per distinct df;
- ``responses``: in-range CSAT answers (raw counts, as ``Tally.responses``) if not zero, else the
  largest in-scale total of the scored question types; ``comments``: all counts under "comment";
- reach: min(completed, offered) over offered; bad inputs raise ``ValueError`` as ``wilson`` would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from itertools import chain

import numpy as np
import numpy.typing as npt

from scoring.figures import (
    CES_SCALE,
    CSAT_SCALE,
    NPS_SCALE,
    YESNO_SCALE,
    Estimate,
    GroupFigures,
    Tally,
)
from scoring.intervals import t_quantile, z_for

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

WIDTH = 11  # values 0…10: every scale fits
EMPTY: Counter[int] = Counter()


def _matrix(
    counters: list[Counter[int]], rows: Ints, raw_range: tuple[int, int] | None = None
) -> tuple[Ints, Ints]:
    """The N×11 matrix of positive in-range counts; with ``raw_range`` also the signed count sums in it.

    Flattened with C-level iteration (chain, map): no Python bytecode runs per value.
    """
    n_rows = len(counters)
    lengths = np.fromiter(map(len, counters), dtype=np.int64, count=n_rows)
    total = int(lengths.sum())
    matrix = np.zeros((n_rows, WIDTH), dtype=np.int64)
    raw = np.zeros(n_rows, dtype=np.int64)
    if total == 0:
        return matrix, raw
    row = np.repeat(rows, lengths)
    keys = np.fromiter(chain.from_iterable(counters), dtype=np.int64, count=total)
    counts = np.fromiter(chain.from_iterable(map(Counter.values, counters)), dtype=np.int64, count=total)
    ok = (keys >= 0) & (keys < WIDTH) & (counts > 0)
    np.add.at(matrix.reshape(-1), row[ok] * WIDTH + keys[ok], counts[ok])
    if raw_range is not None:
        sel = (keys >= raw_range[0]) & (keys <= raw_range[1])
        np.add.at(raw, row[sel], counts[sel])
    return matrix, raw


class _Builder:
    """Turns value/low/high columns and a validity mask into Estimates (sharing the frozen ``none``s)."""

    def __init__(self) -> None:
        self._none: dict[int, Estimate] = {}

    def none(self, n: int) -> Estimate:
        e = self._none.get(n)
        if e is None:
            e = self._none[n] = Estimate.none(n)
        return e

    def build(
        self, ok: npt.NDArray[np.bool_], value: Floats, low: Floats, high: Floats, n: Ints
    ) -> list[Estimate]:
        none = self.none
        make = _make_estimate
        return [
            make(v, lo, hi, k) if good else none(k)
            for good, v, lo, hi, k in zip(
                ok.tolist(), value.tolist(), low.tolist(), high.tolist(), n.tolist(), strict=True
            )
        ]


_make_estimate: Callable[[float, float, float, int], Estimate] = Estimate
_make_figures: Callable[..., GroupFigures] = GroupFigures


def _wilson(
    successes: Ints, n: Ints, ok: npt.NDArray[np.bool_], confidence: float
) -> tuple[Floats, Floats, Floats]:
    """Value, low and high on 0–100 for the rows in ``ok`` (others are garbage, masked later)."""
    if not ok.any():
        zeros = np.zeros(len(n))
        return zeros, zeros, zeros
    bad = ok & ((successes < 0) | (successes > n))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"successes must be between 0 and n ({int(n[i])}), got {int(successes[i])}")
    z = z_for(confidence)
    s = successes.astype(np.float64)
    nf = np.where(ok, n, 1).astype(np.float64)
    p = s / nf
    z2n = z * z / nf
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * np.sqrt(np.maximum(p * (1 - p) / nf + z2n / (4 * nf), 0.0)) / (1 + z2n)
    low = np.where(successes == 0, 0.0, np.maximum(0.0, centre - half))
    high = np.where(successes == n, 1.0, np.minimum(1.0, centre + half))
    return 100.0 * s / nf, 100.0 * low, 100.0 * high


def _share(
    matrix: Ints, scale: tuple[int, int], top: tuple[int, int], min_n: int, confidence: float, b: _Builder
) -> list[Estimate]:
    n = matrix[:, scale[0] : scale[1] + 1].sum(axis=1)
    hits = matrix[:, top[0] : top[1] + 1].sum(axis=1)
    ok = (n != 0) & (n >= min_n)
    value, low, high = _wilson(hits, n, ok, confidence)
    return b.build(ok, value, low, high, n)


def _mean(matrix: Ints, scale: tuple[int, int], min_n: int, confidence: float, b: _Builder) -> list[Estimate]:
    lo, hi = scale
    cols = matrix[:, lo : hi + 1]
    n = cols.sum(axis=1)
    ok = (n != 0) & (n >= min_n) & (n >= 2)
    if not ok.any():
        zeros = np.zeros(len(n))
        return b.build(ok, zeros, zeros, zeros, n)
    nf = np.where(ok, n, 2).astype(np.float64)
    total = cols @ np.arange(lo, hi + 1, dtype=np.int64)  # exact integer sum, like Python's
    avg = total.astype(np.float64) / nf
    # Summed value by value in scale order, as figures.mean does.
    # ``x ** 2`` in Python is libm pow(), which is not always x * x (one ulp now and then); numpy calls pow()
    # too when the exponent is an array rather than a scalar, so the sums match bit for bit.
    two = np.full(len(n), 2.0)
    acc = np.zeros(len(n))
    for j, v in enumerate(range(lo, hi + 1)):
        acc = acc + cols[:, j].astype(np.float64) * np.power(v - avg, two)
    var = acc / (nf - 1)
    p = 0.5 + confidence / 2
    quantiles = {df: t_quantile(p, df) for df in np.unique(n[ok] - 1).tolist()}
    tq = np.array(
        [quantiles.get(k - 1, 0.0) if good else 0.0 for k, good in zip(n.tolist(), ok.tolist(), strict=True)]
    )
    half = tq * np.sqrt(var) / np.sqrt(nf)
    low = np.maximum(float(lo), avg - half)
    high = np.minimum(float(hi), avg + half)
    return b.build(ok, avg, low, high, n)


def _nps(matrix: Ints, min_n: int, confidence: float, b: _Builder) -> list[Estimate]:
    promoters = matrix[:, 9:11].sum(axis=1)
    passives = matrix[:, 7:9].sum(axis=1)
    detractors = matrix[:, 0:7].sum(axis=1)
    n = promoters + passives + detractors
    ok = (n != 0) & (n >= min_n)
    if not ok.any():
        zeros = np.zeros(len(n))
        return b.build(ok, zeros, zeros, zeros, n)
    z = z_for(confidence)
    nf = np.where(ok, n, 1).astype(np.float64)
    value = 100.0 * (promoters - detractors).astype(np.float64) / nf
    na = (n + 3).astype(np.float64)
    p = (promoters + 1).astype(np.float64) / na
    d = (detractors + 1).astype(np.float64) / na
    centre = p - d
    var = (p + d - centre * centre) / na
    half = z * np.sqrt(np.maximum(var, 0.0))
    low = np.maximum(-1.0, centre - half) * 100.0
    high = np.minimum(1.0, centre + half) * 100.0
    return b.build(ok, value, np.minimum(low, value), np.maximum(high, value), n)


def figures_for_many(
    tallies: Sequence[Tally], min_n: int = 10, confidence: float = 0.95
) -> list[GroupFigures]:
    """``[figures_for(t, min_n, confidence) for t in tallies]``, computed column-wise."""
    count = len(tallies)
    if count == 0:
        return []
    answers = [t.answers for t in tallies]
    rows = np.arange(count, dtype=np.int64)
    csat, csat_raw = _matrix([a.get("csat") or EMPTY for a in answers], rows, raw_range=CSAT_SCALE)
    nps_m, _ = _matrix([a.get("nps") or EMPTY for a in answers], rows)
    ces, _ = _matrix([a.get("ces") or EMPTY for a in answers], rows)
    yesno, _ = _matrix([a.get("yesno") or EMPTY for a in answers], rows)
    comments = [sum(c.values()) if c else 0 for c in [a.get("comment") for a in answers]]

    scored = np.stack(
        [
            csat[:, 1:6].sum(axis=1),
            nps_m.sum(axis=1),
            ces[:, 1:8].sum(axis=1),
            yesno[:, 0:2].sum(axis=1),
        ]
    ).max(axis=0)
    responses = np.where(csat_raw != 0, csat_raw, scored).tolist()

    b = _Builder()
    csat_pct = _share(csat, CSAT_SCALE, (4, 5), min_n, confidence, b)
    csat_mean = _mean(csat, CSAT_SCALE, min_n, confidence, b)
    nps = _nps(nps_m, min_n, confidence, b)
    ces_mean = _mean(ces, CES_SCALE, min_n, confidence, b)
    ces_easy = _share(ces, CES_SCALE, (5, 7), min_n, confidence, b)
    fcr = _share(yesno, YESNO_SCALE, (1, 1), min_n, confidence, b)

    funnels = [t.funnel for t in tallies]
    offered = np.array([f.offered for f in funnels], dtype=np.int64)
    completed = np.array([f.completed for f in funnels], dtype=np.int64)
    ok = (offered != 0) & (offered >= min_n)
    bad = ok & (offered < 0)
    if bad.any():
        raise ValueError("a proportion needs at least one observation")
    reached = np.minimum(completed, offered)
    value, low, high = _wilson(reached, offered, ok, confidence)
    reach = b.build(ok, value, low, high, offered)

    assert NPS_SCALE == (0, 10) and CES_SCALE[1] < WIDTH
    make = _make_figures
    return [
        make(*row)
        for row in zip(
            responses,
            csat_pct,
            csat_mean,
            nps,
            ces_mean,
            ces_easy,
            fcr,
            reach,
            funnels,
            comments,
            strict=True,
        )
    ]
