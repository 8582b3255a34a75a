"""Which calls are offered a survey: pure rules, applied when the agent answers.

The decision is taken before anyone knows how the call will go (only the queue, agent, caller and
a reproducible draw are inputs), so the sample is not biased by the call's outcome. Talk time is the
one rule that can only be checked when the agent hangs up; it is applied then, by
:func:`apply_talk_time`, and both steps are stored with their reason for audit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ivr.settings import QueuePolicy

# Reasons, stored verbatim in calls.offer_reason / calls.reason.
SAMPLED = "sampled"
NOT_SAMPLED = "not_sampled"
EXCLUDED_QUEUE = "excluded_queue"
EXCLUDED_AGENT = "excluded_agent"
SURVEY_DISABLED = "survey_disabled"
OPTED_OUT = "opted_out"
COOLDOWN = "cooldown"
TALK_TIME_BELOW_MINIMUM = "talk_time_below_minimum"


@dataclass(frozen=True)
class OfferContext:
    queue: str
    agent: str
    caller_hash: str | None
    at: datetime
    draw: float
    last_surveyed_at: datetime | None
    opted_out: bool
    queue_excluded: bool


@dataclass(frozen=True)
class Decision:
    offer: bool
    reason: str
    draw: float | None = None


def decide_offer(policy: QueuePolicy, ctx: OfferContext) -> Decision:
    """Checks run from the hardest exclusion to the softest, so the stored reason is the decisive one."""
    if ctx.queue_excluded:
        return Decision(False, EXCLUDED_QUEUE, ctx.draw)
    if not policy.enabled:
        return Decision(False, SURVEY_DISABLED, ctx.draw)
    if ctx.agent in policy.excluded_agents:
        return Decision(False, EXCLUDED_AGENT, ctx.draw)
    if ctx.opted_out:
        return Decision(False, OPTED_OUT, ctx.draw)
    if (
        policy.cooldown_days > 0
        and ctx.last_surveyed_at is not None
        and ctx.at - ctx.last_surveyed_at < timedelta(days=policy.cooldown_days)
    ):
        return Decision(False, COOLDOWN, ctx.draw)
    if ctx.draw >= policy.sampling_rate:
        return Decision(False, NOT_SAMPLED, ctx.draw)
    return Decision(True, SAMPLED, ctx.draw)


def apply_talk_time(decision: Decision, policy: QueuePolicy, talk_seconds: float | None) -> Decision:
    """A call too short to judge the agent is not surveyed; unknown talk time does not block."""
    if decision.offer and talk_seconds is not None and talk_seconds < policy.min_talk_seconds:
        return replace(decision, offer=False, reason=TALK_TIME_BELOW_MINIMUM)
    return decision
