"""The per-agent CSAT line the demo prints: n, CSAT % (share of 4–5 among 1–5) and the mean.

Pure: rows in, figures out. (The seeds' worked example: 80 ratings of 4–5 among 112 → 71 %.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class AgentCsat:
    agent: str
    n: int
    csat_pct: float | None
    mean: float | None


def csat_percent(values: Iterable[int]) -> float | None:
    ratings = [v for v in values if 1 <= v <= 5]
    if not ratings:
        return None
    return 100.0 * sum(1 for v in ratings if v >= 4) / len(ratings)


def summarize_by_agent(rows: Iterable[tuple[str | None, int | None]]) -> list[AgentCsat]:
    by_agent: dict[str, list[int]] = defaultdict(list)
    for agent, value in rows:
        if agent and value is not None and 1 <= value <= 5:
            by_agent[agent].append(value)
    return [
        AgentCsat(agent, len(vals), csat_percent(vals), sum(vals) / len(vals))
        for agent, vals in sorted(by_agent.items())
    ]
