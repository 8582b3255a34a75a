"""Bands and flags for the training view.

Bands default to the seeds' ACSI reading: CSAT ≥ 80 % is good, below 60 % has much room to improve.
A target can be set per queue (``[queues.<name>] csat_target_pct``) and globally
(``[scoring] target_pct``); a group whose CSAT % is below its target is flagged ``below_target``.
"""

from __future__ import annotations

from enum import StrEnum

from scoring.figures import Estimate


class Band(StrEnum):
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"


class Flag(StrEnum):
    INSUFFICIENT_DATA = "insufficient_data"
    BELOW_TARGET = "below_target"
    NO_ANSWERS = "no_answers"


def band_for(csat_pct: float | None, good_pct: float = 80.0, poor_pct: float = 60.0) -> Band | None:
    if csat_pct is None:
        return None
    if csat_pct >= good_pct:
        return Band.GOOD
    if csat_pct < poor_pct:
        return Band.POOR
    return Band.FAIR


def flag_for(csat: Estimate, target_pct: float | None) -> Flag | None:
    """One flag per row, the most important first: no figure at all beats being below target."""
    if csat.n == 0:
        return Flag.NO_ANSWERS
    if csat.value is None:
        return Flag.INSUFFICIENT_DATA
    if target_pct is not None and csat.value < target_pct:
        return Flag.BELOW_TARGET
    return None
