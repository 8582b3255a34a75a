"""Synthetic contact-centre history for ``bench/rollups.py``: calls with their survey funnel, and answers.

Why synthetic and why this shape: the rollups' cost depends on how sparse day × agent × queue × question
is, on the share of calls that reach the survey and on where local days start, so the data copies what a
real centre looks like rather than spreading 10 M rows uniformly:

* ``agents`` agents in ``teams`` teams; each team owns 4 of the ``queues`` queues and each agent serves
  2–4 queues (mostly the team's, one in ten also one elsewhere), one of them as the main queue.
* Working hours in the configured time zone: Mon–Fri 08–18 (a curve with a morning peak), every fourth
  Saturday 09–14 for a quarter of the agents, no Sundays, a few public holidays; 80 % of agents full time,
  20 % on three fixed weekdays, four weeks of leave a year; a few join or leave during the two years.
  Volume grows ~20 % over the period and has a mild season. Today has the hours that ended an hour ago.
* The funnel: 81 % of calls complete the 3-question survey (csat 1–5, fcr yes/no stored 1/0, nps 0–10),
  3 % are partial (1–2 answers), 3.5 % no input, 1.5 % offered but never reached, and the rest were not
  offered (not sampled, cooldown, opted out, talk time below the minimum, caller hung up on the agent).
  One call in a thousand has no ``connected_at`` (only the survey leg saw it: AMI was down).
* Each agent has a true satisfaction level (share of CSAT 4–5 drawn around 80 %), and FCR and NPS follow
  the CSAT answer, so ranking and intervals have real differences to find.

Exactly ``answers`` answer rows are made: the total is split over the days by their weight (largest
remainder) and each day draws calls until its share is used up (the last call is cut to a partial survey).
Everything comes from one seed, so the SQLite and the PostgreSQL copy hold the same rows, and ids are
assigned here (answers 1…N) rather than by the database.
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo

#: Bump when the generated data changes, so that a stored copy made by an older generator is reloaded.
GENERATOR_VERSION = "1"

SURVEY = "default"
QUESTIONS = (("csat", "csat", 1), ("fcr", "yesno", 2), ("nps", "nps", 3))

CALL_COLUMNS = (
    "uniqueid",
    "linkedid",
    "queue",
    "agent",
    "agent_interface",
    "caller_hash",
    "joined_at",
    "connected_at",
    "ended_at",
    "hold_seconds",
    "talk_seconds",
    "end_reason",
    "offer",
    "offer_reason",
    "sample_draw",
    "survey_name",
    "survey_state",
    "reason",
    "survey_started_at",
    "survey_ended_at",
    "answers_count",
    "updated_at",
)
ANSWER_COLUMNS = (
    "id",
    "call_uniqueid",
    "linkedid",
    "queue",
    "agent",
    "agent_interface",
    "survey",
    "question",
    "question_type",
    "position",
    "value",
    "recording",
    "tries",
    "answered_at",
)
AGENT_COLUMNS = ("agent", "team", "display_name", "email", "updated_at")

# Call outcomes: (name, share of calls). Completed and partial carry answers; the others none.
COMPLETED, PARTIAL, NO_INPUT, NOT_REACHED = "completed", "partial", "no_input", "not_reached"
NOT_SAMPLED, COOLDOWN, OPTED_OUT, SHORT, HUNG_UP = "not_sampled", "cooldown", "opted_out", "short", "hung_up"
OUTCOMES = (
    (COMPLETED, 81.0),
    (PARTIAL, 3.0),
    (NO_INPUT, 3.5),
    (NOT_REACHED, 1.5),
    (NOT_SAMPLED, 4.0),
    (COOLDOWN, 2.0),
    (OPTED_OUT, 0.5),
    (SHORT, 3.0),
    (HUNG_UP, 1.5),
)
_OUTCOME_NAMES = [name for name, _ in OUTCOMES]
_OUTCOME_CUM = list(accumulate(share for _, share in OUTCOMES))

#: Local working hours and their relative call volume (hour → weight).
WEEKDAY_HOURS = {8: 0.6, 9: 1.0, 10: 1.2, 11: 1.2, 12: 0.9, 13: 0.8, 14: 1.0, 15: 1.1, 16: 1.0, 17: 0.7}
SATURDAY_HOURS = {9: 0.8, 10: 1.0, 11: 1.0, 12: 0.8, 13: 0.5}
WEEKDAY_VOLUME = (1.15, 1.0, 1.0, 1.0, 0.9, 0.3, 0.0)  # Monday … Sunday
HOLIDAYS = {(1, 1), (5, 1), (10, 3), (12, 25), (12, 26)}
HALF_DAYS = {(12, 24), (12, 31)}

#: NPS answers given a CSAT answer (a draw from the list): satisfied callers recommend.
NPS_BY_CSAT = {
    1: (0, 0, 1, 1, 2, 2, 3, 4, 5, 6),
    2: (1, 2, 3, 3, 4, 5, 5, 6, 6, 7),
    3: (4, 5, 5, 6, 6, 7, 7, 7, 8, 8),
    4: (6, 7, 7, 8, 8, 8, 9, 9, 9, 10),
    5: (8, 8, 9, 9, 9, 10, 10, 10, 10, 10),
}
CALLERS = 200_000
US = 1_000_000


@dataclass(frozen=True)
class Spec:
    """What to generate; ``fingerprint`` tells whether a stored copy was made from the same spec."""

    answers: int
    now: datetime  # aware; "today" is its local date, the history ends an hour before it
    timezone: str
    agents: int = 1000
    teams: int = 50
    queues: int = 50
    days: int = 730
    seed: int = 20261123

    def fingerprint(self) -> str:
        fields = {**asdict(self), "now": self.now.isoformat(), "generator": GENERATOR_VERSION}
        return ";".join(f"{k}={v}" for k, v in sorted(fields.items()))

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def today(self) -> date:
        return self.now.astimezone(self.tz).date()

    @property
    def first_day(self) -> date:
        return self.today - timedelta(days=self.days)


@dataclass(frozen=True)
class AgentProfile:
    name: str
    team: str
    interface: str
    queues: tuple[str, ...]
    queue_cum: tuple[float, ...]
    csat_cum: tuple[float, ...]  # cumulative weights of CSAT 1…5
    fcr_base: float
    activity: float
    weekdays: frozenset[int]
    saturday_rota: int | None  # works Saturdays whose ISO week % 4 equals this
    away_weeks: frozenset[tuple[int, int]]  # (ISO year, ISO week) on leave
    first_day: date
    last_day: date

    def works(self, day: date) -> bool:
        if not self.first_day <= day <= self.last_day:
            return False
        year, week, weekday = day.isocalendar()
        if (year, week) in self.away_weeks:
            return False
        if weekday == 6:
            return self.saturday_rota is not None and week % 4 == self.saturday_rota
        return weekday - 1 in self.weekdays


@dataclass
class DayBatch:
    day: date
    calls: list[tuple[Any, ...]]
    answers: list[tuple[Any, ...]]


def team_name(t: int) -> str:
    return f"team{t + 1:02d}"


def queue_name(q: int) -> str:
    return f"queue{q + 1:02d}"


def make_agents(spec: Spec) -> list[AgentProfile]:
    """The agents, their teams, queues, schedules and true satisfaction (from the seed alone)."""
    rng = random.Random(f"{spec.seed}-agents")
    years = sorted({spec.first_day.year + i for i in range(spec.days // 365 + 2)})
    out = []
    for i in range(spec.agents):
        team = i * spec.teams // spec.agents
        home = [(4 * team + j) % spec.queues for j in range(4)]
        picked = rng.sample(home, rng.choice((2, 2, 3, 3, 3, 4)))
        if rng.random() < 0.1:
            extra = rng.randrange(spec.queues)
            if extra not in picked:
                picked.append(extra)
        weights = [3.0] + [1.0] * (len(picked) - 1)
        top = min(0.97, max(0.45, rng.gauss(0.80, 0.08)))  # true share of CSAT 4–5
        csat = (0.25 * (1 - top), 0.30 * (1 - top), 0.45 * (1 - top), 0.40 * top, 0.60 * top)
        full_time = rng.random() < 0.8
        weekdays = frozenset(range(5)) if full_time else frozenset(rng.sample(range(5), 3))
        away = set()
        for year in years:
            for week in rng.sample(range(1, 53), 4):
                away.add((year, week))
        first, last = spec.first_day, spec.today
        if rng.random() < 0.08:
            first = spec.first_day + timedelta(days=rng.randrange(spec.days))
        elif rng.random() < 0.08:
            last = spec.first_day + timedelta(days=rng.randrange(spec.days))
        name = f"agent{i + 1:04d}"
        out.append(
            AgentProfile(
                name=name,
                team=team_name(team),
                interface=f"PJSIP/{name}",
                queues=tuple(queue_name(q) for q in picked),
                queue_cum=tuple(accumulate(weights)),
                csat_cum=tuple(accumulate(csat)),
                fcr_base=min(0.95, max(0.3, top - 0.1 + rng.gauss(0, 0.05))),
                activity=math.exp(rng.gauss(0.0, 0.25)),
                weekdays=weekdays,
                saturday_rota=rng.randrange(4) if rng.random() < 0.25 else None,
                away_weeks=frozenset(away),
                first_day=first,
                last_day=last,
            )
        )
    return out


def agent_rows(spec: Spec) -> list[tuple[Any, ...]]:
    """The ``agents`` table: team membership for team reports."""
    stamp = spec.now.astimezone(UTC).replace(tzinfo=None)
    return [
        (a.name, a.team, f"Agent {a.name[5:]}", f"{a.name}@example.com", stamp) for a in make_agents(spec)
    ]


def _hours(spec: Spec, day: date) -> dict[int, float]:
    """The local hours with calls on ``day`` and their weights; today only hours ended >= 1 h before now."""
    if (day.month, day.day) in HOLIDAYS or day.weekday() == 6:
        return {}
    hours = SATURDAY_HOURS if day.weekday() == 5 else WEEKDAY_HOURS
    if (day.month, day.day) in HALF_DAYS:
        hours = {h: w for h, w in hours.items() if h < 12}
    if day == spec.today:
        local_now = spec.now.astimezone(spec.tz)
        hours = {h: w for h, w in hours.items() if h + 2 <= local_now.hour}
    return hours


def day_weights(spec: Spec) -> list[tuple[date, float]]:
    """Relative answer volume per local day: weekday × season × growth × share of the hours open."""
    out = []
    for k in range(spec.days + 1):
        day = spec.first_day + timedelta(days=k)
        hours = _hours(spec, day)
        if not hours:
            out.append((day, 0.0))
            continue
        base = WEEKDAY_HOURS if day.weekday() < 5 else SATURDAY_HOURS
        open_share = sum(hours.values()) / sum(base.values())
        season = 1.0 + 0.1 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 20) / 365.25)
        growth = 0.9 + 0.2 * k / spec.days
        out.append((day, WEEKDAY_VOLUME[day.weekday()] * season * growth * open_share))
    return out


def day_budgets(spec: Spec) -> list[tuple[date, int]]:
    """``spec.answers`` split over the days in proportion to their weight (largest remainder)."""
    weights = day_weights(spec)
    total = sum(w for _, w in weights)
    exact = [spec.answers * w / total for _, w in weights]
    counts = [int(x) for x in exact]
    short = spec.answers - sum(counts)
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)[:short]:
        counts[i] += 1
    return [(day, n) for (day, _), n in zip(weights, counts, strict=True)]


def _callers(seed: int) -> list[str]:
    """HMAC-looking caller hashes (64 hex digits) for a pool of repeat callers."""
    return [hashlib.sha256(f"{seed}-caller-{i}".encode()).hexdigest() for i in range(CALLERS)]


_CLOCK = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}." for s in range(86400)]


def _stamp(prefix: str, us: int) -> str:
    """SQLAlchemy's own DateTime text for SQLite (and valid timestamp input for PostgreSQL)."""
    return f"{prefix}{_CLOCK[us // US]}{us % US:06d}"


def generate(spec: Spec) -> Iterator[DayBatch]:
    """One batch per local day, oldest first: call rows and answer rows in ``*_COLUMNS`` order."""
    rng = random.Random(f"{spec.seed}-calls")
    rnd = rng.random
    agents = make_agents(spec)
    callers = _callers(spec.seed)
    tz = spec.tz
    answer_id = 0
    call_seq = 0
    for day, budget in day_budgets(spec):
        if budget == 0:
            yield DayBatch(day, [], [])
            continue
        hours = _hours(spec, day)
        working = [a for a in agents if a.works(day)] or agents
        # Working hours are between 08:00 and 19:00 local, so the UTC offset at noon holds for every call
        # (DST switches at night) and every UTC timestamp falls on the same UTC date as the local day.
        offset_us = int(datetime.combine(day, time(12), tz).utcoffset().total_seconds()) * US  # type: ignore[union-attr]
        day_epoch = int(datetime.combine(day, time(), UTC).timestamp())
        prefix = f"{day.isoformat()} "

        outcomes: list[tuple[str, int]] = []
        left = budget
        while left > 0:
            outcome = _OUTCOME_NAMES[bisect(_OUTCOME_CUM, rnd() * _OUTCOME_CUM[-1])]
            k = 3 if outcome == COMPLETED else (1 if rnd() < 0.5 else 2) if outcome == PARTIAL else 0
            if k > left:
                outcome, k = PARTIAL, left
            left -= k
            outcomes.append((outcome, k))
        n = len(outcomes)
        who = rng.choices(working, cum_weights=list(accumulate(a.activity for a in working)), k=n)
        hour_list = list(hours)
        slots = rng.choices(hour_list, cum_weights=list(accumulate(hours[h] for h in hour_list)), k=n)
        starts = sorted(h * 3600 * US + int(rnd() * 3600 * US) - offset_us for h in slots)

        calls: list[tuple[Any, ...]] = []
        answers: list[tuple[Any, ...]] = []
        for (outcome, k), agent, joined in zip(outcomes, who, starts, strict=True):
            call_seq += 1
            uid = f"{day_epoch + joined // US}.{call_seq}"
            queue = agent.queues[bisect(agent.queue_cum, rnd() * agent.queue_cum[-1])]
            hold = min(int(rng.expovariate(1 / 35.0) * US), 600 * US)
            if outcome == SHORT:
                talk = int((3 + 17 * rnd()) * US)
            else:
                talk = min(max(int(rng.lognormvariate(5.4, 0.7) * US), 20 * US), 2400 * US)
            connected = joined + hold
            ended = connected + talk
            offer, offer_reason, reason = True, "sampled", None
            survey_name: str | None = SURVEY
            state = "completed"
            started_at: str | None = None
            ended_survey: str | None = None
            updated = ended
            end_reason = "agent"
            if outcome in (NOT_SAMPLED, COOLDOWN, OPTED_OUT):
                offer, offer_reason, reason, survey_name, state = False, outcome, outcome, None, "not_offered"
            elif outcome == SHORT:
                state, reason, survey_name = "not_offered", "talk_time_below_minimum", None
            elif outcome == HUNG_UP:
                state, reason, survey_name, end_reason = "not_offered", "caller_hung_up", None, "caller"
            elif outcome == NOT_REACHED:
                state, reason = "offered", "survey_not_reached"
            else:
                start = ended + int(300_000 + 1_200_000 * rnd())
                started_at = _stamp(prefix, start)
                at = start
                csat_value = 0
                for key, qtype, position in QUESTIONS[:k]:
                    at += int((5 + 7 * rnd()) * US)
                    if qtype == "csat":
                        csat_value = 1 + bisect(agent.csat_cum, rnd() * agent.csat_cum[-1])
                        value = csat_value
                    elif qtype == "yesno":
                        value = 1 if rnd() < agent.fcr_base * (0.7 + 0.08 * csat_value) else 0
                    else:
                        value = NPS_BY_CSAT[csat_value][int(rnd() * 10)]
                    answer_id += 1
                    answers.append(
                        (
                            answer_id,
                            uid,
                            uid,
                            queue,
                            agent.name,
                            agent.interface,
                            SURVEY,
                            key,
                            qtype,
                            position,
                            value,
                            None,
                            2 if rnd() < 0.05 else 1,
                            _stamp(prefix, at),
                        )
                    )
                if outcome == NO_INPUT:
                    at += 25 * US
                    state, reason = "no_input", "no_input"
                elif outcome == PARTIAL:
                    state, reason = "partial", "caller_hung_up_during_survey"
                updated = at + 2 * US
                ended_survey = _stamp(prefix, updated)
            lost_to_ami = started_at is not None and rnd() < 0.001
            calls.append(
                (
                    uid,
                    uid,
                    queue,
                    agent.name,
                    agent.interface,
                    callers[int(rnd() * CALLERS)],
                    None if lost_to_ami else _stamp(prefix, joined),
                    None if lost_to_ami else _stamp(prefix, connected),
                    None if lost_to_ami else _stamp(prefix, ended),
                    None if lost_to_ami else hold // US,
                    None if lost_to_ami else talk // US,
                    None if lost_to_ami else end_reason,
                    offer,
                    offer_reason,
                    rnd(),
                    survey_name,
                    state,
                    reason,
                    started_at,
                    ended_survey,
                    k,
                    _stamp(prefix, updated),
                )
            )
        yield DayBatch(day, calls, answers)
