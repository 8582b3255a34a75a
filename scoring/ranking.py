"""Ranking agents (or queues, teams) so that three lucky calls never beat three hundred good ones.

We rank by the **lower bound of the 95 % Wilson interval of CSAT %**, not by CSAT % itself: an agent
with 3 of 3 satisfied callers has a lower bound of 44 %, one with 240 of 300 has 75 %, so the second
ranks first. The lower bound is what we can say *with confidence* about an agent; it needs no prior
and no tuning, and a trainer can read it off the report (``csat_pct_low``). Groups below the minimum
number of answers get no rank at all. Ties are broken by more responses, then by name.
(Why not empirical-Bayes shrinkage: see ``docs/scoring.md``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Rankable(Protocol):
    @property
    def group(self) -> str: ...

    @property
    def responses(self) -> int: ...

    @property
    def rank_score(self) -> float | None: ...


def rank(rows: Sequence[Rankable]) -> list[int | None]:
    """Rank 1 = best, aligned with ``rows``; rows without a score (insufficient data) get None.

    Standard competition ranking: equal scores (and equal responses) share a rank, the next is skipped.
    """

    def score(i: int) -> float:
        return round(rows[i].rank_score or 0.0, 9)  # float noise must not split a tie

    order = sorted(
        (i for i, r in enumerate(rows) if r.rank_score is not None),
        key=lambda i: (-score(i), -rows[i].responses, rows[i].group),
    )
    ranks: list[int | None] = [None] * len(rows)
    previous: tuple[float, int] | None = None
    for position, i in enumerate(order, start=1):
        key = (score(i), rows[i].responses)
        ranks[i] = ranks[order[position - 2]] if previous == key else position
        previous = key
    return ranks
