"""A ranked report: one row per group (agent, queue, team or question) and period, with every figure.

``rows_from_tallies`` is pure (tallies in, rows out); ``build_report`` adds the database: it refreshes
the rollups on demand, reads the counts (``scoring.tallies``) and names teams. The CLI, the scheduled
exports and the dashboard all render the same ``Report``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from ivr.settings import Settings
from scoring.bands import band_for, flag_for
from scoring.figures import Estimate, GroupFigures, Tally, figures_for
from scoring.figures_batch import figures_for_many
from scoring.periods import local_today, period_label
from scoring.ranking import rank
from scoring.tallies import GroupKey, ReportQuery, load_tallies

ALL = "(all)"


@dataclass(frozen=True)
class ReportRow:
    """One line of a report. Percentages are 0–100; None where a figure does not apply or n is too small."""

    group: str
    period: str | None
    responses: int
    csat_pct: float | None
    csat_pct_low: float | None
    csat_pct_high: float | None
    csat_mean: float | None
    csat_mean_low: float | None
    csat_mean_high: float | None
    nps: float | None
    nps_low: float | None
    nps_high: float | None
    nps_responses: int
    ces_mean: float | None
    ces_mean_low: float | None
    ces_mean_high: float | None
    ces_easy_pct: float | None
    fcr_pct: float | None
    fcr_pct_low: float | None
    fcr_pct_high: float | None
    handled: int | None
    eligible: int | None
    offered: int | None
    started: int | None
    completed: int | None
    partial: int | None
    no_input: int | None
    reach_pct: float | None
    comments: int
    band: str | None
    target_pct: float | None
    rank: int | None
    flag: str | None
    distribution: dict[int, int] = field(default_factory=dict)  # CSAT answers per value 1–5

    @property
    def rank_score(self) -> float | None:
        return self.csat_pct_low

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["distribution"] = {str(k): v for k, v in self.distribution.items()}
        return out


@dataclass(frozen=True)
class Report:
    query: ReportQuery
    rows: list[ReportRow]
    totals: list[ReportRow]  # one per period (or one for the range): everyone together, for comparison
    timezone: str
    min_responses: int
    generated_at: datetime

    @property
    def title(self) -> str:
        q = self.query
        what = f"CSAT by {q.by}" + (f" per {q.period}" if q.period else "")
        scope = "".join(
            f", {k} {v}" for k, v in (("queue", q.queue), ("question", q.question), ("agent", q.agent)) if v
        )
        return f"{what}, {q.date_from.isoformat()} to {q.date_to.isoformat()}{scope}"


def _est(e: Estimate) -> tuple[float | None, float | None, float | None]:
    return e.value, e.low, e.high


def row_for(
    group: str,
    period: str | None,
    tally: Tally,
    *,
    min_n: int,
    confidence: float,
    good_pct: float,
    poor_pct: float,
    target_pct: float | None,
    funnel_applies: bool = True,
    figures: GroupFigures | None = None,
    rank: int | None = None,
) -> ReportRow:
    f: GroupFigures = figures or figures_for(tally, min_n, confidence)
    csat, csat_low, csat_high = _est(f.csat_pct)
    mean, mean_low, mean_high = _est(f.csat_mean)
    nps, nps_low, nps_high = _est(f.nps)
    ces, ces_low, ces_high = _est(f.ces_mean)
    fcr, fcr_low, fcr_high = _est(f.fcr_pct)
    funnel = f.funnel if funnel_applies else None
    flag = flag_for(f.csat_pct, target_pct)
    csat_counts = tally.counts("csat")
    return ReportRow(
        group=group,
        period=period,
        responses=f.responses,
        csat_pct=csat,
        csat_pct_low=csat_low,
        csat_pct_high=csat_high,
        csat_mean=mean,
        csat_mean_low=mean_low,
        csat_mean_high=mean_high,
        nps=nps,
        nps_low=nps_low,
        nps_high=nps_high,
        nps_responses=f.nps.n,
        ces_mean=ces,
        ces_mean_low=ces_low,
        ces_mean_high=ces_high,
        ces_easy_pct=f.ces_easy_pct.value,
        fcr_pct=fcr,
        fcr_pct_low=fcr_low,
        fcr_pct_high=fcr_high,
        handled=funnel.handled if funnel else None,
        eligible=funnel.eligible if funnel else None,
        offered=funnel.offered if funnel else None,
        started=funnel.started if funnel else None,
        completed=funnel.completed if funnel else None,
        partial=funnel.partial if funnel else None,
        no_input=funnel.no_input if funnel else None,
        reach_pct=f.reach_pct.value if funnel else None,
        comments=f.comments,
        band=(b.value if (b := band_for(csat, good_pct, poor_pct)) else None),
        target_pct=target_pct,
        rank=rank,
        flag=flag.value if flag else None,
        distribution={v: csat_counts.get(v, 0) for v in range(1, 6)},
    )


def rows_from_tallies(
    tallies: Mapping[GroupKey, Tally],
    query: ReportQuery,
    settings: Settings,
    *,
    target_for: Callable[[str], float | None] | None = None,
) -> tuple[list[ReportRow], list[ReportRow]]:
    """Rows ranked within each period, and one total row per period. Pure."""
    s = settings.scoring
    funnel_applies = query.by != "question"

    def target(group: str) -> float | None:
        if target_for is not None:
            return target_for(group)
        return settings.target_for(group if query.by == "queue" else query.queue)

    def make(
        group: str,
        period: date | None,
        tally: Tally,
        tgt: float | None,
        figures: GroupFigures,
        position: int | None,
    ) -> ReportRow:
        label = period_label(period, query.period) if (period and query.period) else None
        return row_for(
            group,
            label,
            tally,
            min_n=s.min_responses,
            confidence=s.confidence,
            good_pct=s.good_pct,
            poor_pct=s.poor_pct,
            target_pct=tgt,
            funnel_applies=funnel_applies,
            figures=figures,
            rank=position,
        )

    periods = sorted({p for _, p in tallies}, key=lambda p: p or date.min)
    rows: list[ReportRow] = []
    totals: list[ReportRow] = []
    for period in periods:
        keys = sorted(k for k in tallies if k[1] == period)
        figs = figures_for_many([tallies[k] for k in keys], s.min_responses, s.confidence)
        ranks = rank([_Ranked(g, f.responses, f.csat_pct.low) for (g, _), f in zip(keys, figs, strict=True)])
        in_period = [
            make(g, p, tallies[(g, p)], target(g), f, n)
            for (g, p), f, n in zip(keys, figs, ranks, strict=True)
        ]
        in_period.sort(key=lambda r: (r.rank is None, r.rank or 0, r.group))
        rows.extend(in_period)
        total = Tally()
        for k in keys:
            total.add(tallies[k])
        total_figures = figures_for(total, s.min_responses, s.confidence)
        totals.append(make(ALL, period, total, settings.target_for(query.queue), total_figures, None))
    return rows, totals


@dataclass(frozen=True)
class _Ranked:
    group: str
    responses: int
    rank_score: float | None


def build_report(
    engine: Engine,
    settings: Settings,
    query: ReportQuery,
    *,
    now: datetime | None = None,
    refresh: bool = True,
) -> Report:
    """Refresh the rollups (cheap when nothing changed), read the counts, compute and rank."""
    from scoring import rollups
    from scoring.teams import team_map

    now = now or datetime.now(UTC)
    tz = settings.tz
    if refresh:
        rollups.refresh(engine, tz, now=now)
    team_of = team_map(engine, settings) if query.by == "team" else None
    tallies = load_tallies(
        engine, tz, query, rolled_through=rollups.rolled_through(engine, tz), team_of=team_of
    )
    rows, totals = rows_from_tallies(tallies, query, settings)
    return Report(query, rows, totals, settings.timezone, settings.scoring.min_responses, now)


def default_range(settings: Settings, now: datetime | None = None) -> tuple[date, date]:
    """Without --from/--to: the last 30 days including today."""
    today = local_today(settings.tz, now)
    return today - timedelta(days=29), today
