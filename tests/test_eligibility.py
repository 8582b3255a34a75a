"""Who is offered a survey: the pure rules (ivr.eligibility), the caller hash and the sample draw
(ivr.caller_hash), and the once-per-call decision service built on them (ivr.offers).
"""

from __future__ import annotations

import os
import statistics
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from ivr import eligibility as el
from ivr.caller_hash import caller_hash, normalize_number, sample_draw
from ivr.eligibility import Decision, OfferContext, apply_talk_time, decide_offer
from ivr.models import SurveyState
from ivr.offers import OfferService
from ivr.settings import QueuePolicy, Settings

AT = datetime(2025, 3, 10, 12, 0, 0)


@pytest.fixture(autouse=True)
def _no_local_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Settings() must see only what a test gives it: no ./csat.toml, no CSAT_* from the shell."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CSAT_")]:
        monkeypatch.delenv(name)


def ctx(**kw: Any) -> OfferContext:
    base: dict[str, Any] = {
        "queue": "support",
        "agent": "agent1",
        "caller_hash": "h" * 64,
        "at": AT,
        "draw": 0.5,
        "last_surveyed_at": None,
        "opted_out": False,
        "queue_excluded": False,
    }
    base.update(kw)
    return OfferContext(**base)


# -- each rule and its reason ---------------------------------------------------------------------


def test_reason_strings_are_the_stored_ones() -> None:
    assert (
        el.SAMPLED,
        el.NOT_SAMPLED,
        el.EXCLUDED_QUEUE,
        el.EXCLUDED_AGENT,
        el.SURVEY_DISABLED,
        el.OPTED_OUT,
        el.COOLDOWN,
        el.TALK_TIME_BELOW_MINIMUM,
    ) == (
        "sampled",
        "not_sampled",
        "excluded_queue",
        "excluded_agent",
        "survey_disabled",
        "opted_out",
        "cooldown",
        "talk_time_below_minimum",
    )


def test_default_policy_offers_and_keeps_the_draw() -> None:
    assert decide_offer(QueuePolicy(), ctx(draw=0.42)) == Decision(True, "sampled", 0.42)


def test_excluded_queue() -> None:
    assert decide_offer(QueuePolicy(), ctx(queue_excluded=True, draw=0.1)) == Decision(
        False, "excluded_queue", 0.1
    )


def test_disabled_survey() -> None:
    assert decide_offer(QueuePolicy(enabled=False), ctx()) == Decision(False, "survey_disabled", 0.5)


def test_excluded_agent_only_that_agent() -> None:
    policy = QueuePolicy(excluded_agents=["agent1", "supervisor"])
    assert decide_offer(policy, ctx(agent="agent1")).reason == "excluded_agent"
    assert decide_offer(policy, ctx(agent="supervisor")).reason == "excluded_agent"
    assert decide_offer(policy, ctx(agent="agent2")) == Decision(True, "sampled", 0.5)


def test_opted_out() -> None:
    assert decide_offer(QueuePolicy(), ctx(opted_out=True)) == Decision(False, "opted_out", 0.5)


def test_cooldown_blocks_within_the_window() -> None:
    policy = QueuePolicy(cooldown_days=7)
    d = decide_offer(policy, ctx(last_surveyed_at=AT - timedelta(days=3)))
    assert d == Decision(False, "cooldown", 0.5)


def test_cooldown_boundary_is_exclusive() -> None:
    policy = QueuePolicy(cooldown_days=7)
    just_inside = ctx(last_surveyed_at=AT - timedelta(days=7) + timedelta(microseconds=1))
    exactly = ctx(last_surveyed_at=AT - timedelta(days=7))
    outside = ctx(last_surveyed_at=AT - timedelta(days=7, seconds=1))
    assert decide_offer(policy, just_inside).reason == "cooldown"
    assert decide_offer(policy, exactly) == Decision(True, "sampled", 0.5)
    assert decide_offer(policy, outside) == Decision(True, "sampled", 0.5)


def test_fractional_cooldown_days() -> None:
    policy = QueuePolicy(cooldown_days=0.5)  # 12 hours
    assert (
        decide_offer(policy, ctx(last_surveyed_at=AT - timedelta(hours=11, minutes=59))).reason == "cooldown"
    )
    assert decide_offer(policy, ctx(last_surveyed_at=AT - timedelta(hours=12))).offer is True


def test_cooldown_off_or_never_surveyed_does_not_block() -> None:
    assert decide_offer(QueuePolicy(cooldown_days=0), ctx(last_surveyed_at=AT)).offer is True
    assert decide_offer(QueuePolicy(cooldown_days=30), ctx(last_surveyed_at=None)).offer is True


@pytest.mark.parametrize(
    ("rate", "draw", "offer"),
    [
        (0.0, 0.0, False),  # rate 0 samples nobody, not even the lowest possible draw
        (0.0, 0.5, False),
        (1.0, 0.0, True),
        (1.0, 0.999999, True),  # rate 1 samples everybody
        (0.3, 0.0, True),
        (0.3, 0.2999, True),
        (0.3, 0.3, False),  # draw < rate is sampled: the boundary itself is not
        (0.3, 0.3001, False),
        (0.3, 0.9, False),
    ],
)
def test_sampling_draw_vs_rate(rate: float, draw: float, offer: bool) -> None:
    d = decide_offer(QueuePolicy(sampling_rate=rate), ctx(draw=draw))
    assert d == Decision(offer, "sampled" if offer else "not_sampled", draw)


def test_precedence_hardest_exclusion_wins() -> None:
    """Every rule fails at once; removing the decisive one reveals the next, in the documented order."""
    policy = QueuePolicy(
        enabled=False, excluded_agents=["agent1"], cooldown_days=7, sampling_rate=0.1, min_talk_seconds=0
    )
    c = ctx(queue_excluded=True, opted_out=True, last_surveyed_at=AT - timedelta(days=1), draw=0.9)
    order = []
    order.append(decide_offer(policy, c).reason)
    c = replace(c, queue_excluded=False)
    order.append(decide_offer(policy, c).reason)
    policy = policy.model_copy(update={"enabled": True})
    order.append(decide_offer(policy, c).reason)
    policy = policy.model_copy(update={"excluded_agents": []})
    order.append(decide_offer(policy, c).reason)
    c = replace(c, opted_out=False)
    order.append(decide_offer(policy, c).reason)
    c = replace(c, last_surveyed_at=None)
    order.append(decide_offer(policy, c).reason)
    c = replace(c, draw=0.05)
    order.append(decide_offer(policy, c).reason)
    assert order == [
        "excluded_queue",
        "survey_disabled",
        "excluded_agent",
        "opted_out",
        "cooldown",
        "not_sampled",
        "sampled",
    ]


# -- apply_talk_time ------------------------------------------------------------------------------


def test_talk_time_below_minimum_withdraws_the_offer_and_keeps_the_draw() -> None:
    policy = QueuePolicy(min_talk_seconds=20)
    d = apply_talk_time(Decision(True, "sampled", 0.25), policy, 19.9)
    assert d == Decision(False, "talk_time_below_minimum", 0.25)


def test_talk_time_at_or_above_minimum_keeps_the_offer() -> None:
    policy = QueuePolicy(min_talk_seconds=20)
    offered = Decision(True, "sampled", 0.25)
    assert apply_talk_time(offered, policy, 20) == offered
    assert apply_talk_time(offered, policy, 300.5) == offered


def test_unknown_talk_time_does_not_block() -> None:
    offered = Decision(True, "sampled", 0.25)
    assert apply_talk_time(offered, QueuePolicy(min_talk_seconds=20), None) == offered


def test_talk_time_keeps_the_earlier_reason_when_not_offered() -> None:
    refused = Decision(False, "opted_out", 0.25)
    assert apply_talk_time(refused, QueuePolicy(min_talk_seconds=20), 3) == refused


def test_talk_time_minimum_zero_never_blocks() -> None:
    offered = Decision(True, "sampled", 0.5)
    assert apply_talk_time(offered, QueuePolicy(min_talk_seconds=0), 0) == offered


# -- caller hash ----------------------------------------------------------------------------------


def test_normalisation_keeps_digits_and_a_leading_plus() -> None:
    assert normalize_number("+1 (555) 010-0100") == "+15550100100"
    assert normalize_number(" +15550100100 ") == "+15550100100"
    assert normalize_number("555.010.0100") == "5550100100"
    assert normalize_number("") is None
    assert normalize_number(None) is None
    assert normalize_number("anonymous") is None


def test_same_hash_for_the_same_number_written_differently() -> None:
    a = caller_hash("s3cret", "+1 (555) 010-0100")
    b = caller_hash("s3cret", "+15550100100")
    assert a == b
    assert a is not None and len(a) == 64 and all(c in "0123456789abcdef" for c in a)


def test_hash_depends_on_number_and_secret_and_hides_the_number() -> None:
    h = caller_hash("s3cret", "+15550100100")
    assert h != caller_hash("s3cret", "+15550100101")
    assert h != caller_hash("other", "+15550100100")
    assert "5550100100" not in (h or "")


def test_no_number_no_hash() -> None:
    assert caller_hash("s3cret", None) is None
    assert caller_hash("s3cret", "") is None
    assert caller_hash("s3cret", "<unknown>") is None


# -- sample draw ----------------------------------------------------------------------------------


def test_sample_draw_is_reproducible_and_secret_dependent() -> None:
    d = sample_draw("s3cret", "1700000000.42")
    assert d == sample_draw("s3cret", "1700000000.42")
    assert 0.0 <= d < 1.0
    assert d != sample_draw("s3cret", "1700000000.43")
    assert d != sample_draw("other", "1700000000.42")


def test_sample_draw_is_roughly_uniform() -> None:
    draws = [sample_draw("s3cret", f"17000{i:05d}.{i % 97}") for i in range(10_000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert 0.48 <= statistics.fmean(draws) <= 0.52
    # and a 30 % sampling rate really samples about 30 %
    assert 0.28 <= sum(d < 0.3 for d in draws) / len(draws) <= 0.32
    # every decile is populated about equally
    deciles = [0] * 10
    for d in draws:
        deciles[int(d * 10)] += 1
    assert all(900 <= n <= 1100 for n in deciles), deciles


# -- OfferService: once per call, with the settings' rules ----------------------------------------


class FakeStore:
    def __init__(self, last: datetime | None = None) -> None:
        self.last = last
        self.writes: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.cooldown_lookups: list[str] = []

    def last_surveyed_at(self, caller_hash: str) -> datetime | None:
        self.cooldown_lookups.append(caller_hash)
        return self.last

    def upsert_call(self, *args: Any, **kw: Any) -> None:
        self.writes.append(("call", args, kw))

    def set_state(self, *args: Any, **kw: Any) -> None:
        self.writes.append(("state", args, kw))


def _decide(service: OfferService, uniqueid: str = "1700000000.1", number: str | None = "+15550100100"):
    return service.decide(
        uniqueid=uniqueid,
        linkedid=uniqueid,
        queue="support",
        agent="agent1",
        caller_number=number,
        at=AT,
    )


def test_offer_service_decides_once_and_stores_the_decision() -> None:
    settings = Settings(hash_secret="s3cret")
    store = FakeStore()
    service = OfferService(settings, store)  # type: ignore[arg-type]
    first = _decide(service)
    second = service.decide(
        uniqueid="1700000000.1", linkedid="x", queue="other", agent="b", caller_number=None, at=AT, late=True
    )
    assert second is first
    assert first.decision == Decision(True, "sampled", sample_draw("s3cret", "1700000000.1"))
    assert service.get("1700000000.1") is first
    assert len(store.writes) == 2  # the second decide wrote nothing
    kind, args, kw = store.writes[0]
    assert (kind, args) == ("call", ("1700000000.1", "1700000000.1"))
    assert kw["caller_hash"] == caller_hash("s3cret", "+15550100100")
    assert (kw["offer"], kw["offer_reason"], kw["survey_name"]) == (True, "sampled", "default")
    kind, args, kw = store.writes[1]
    assert (kind, args) == ("state", ("1700000000.1", SurveyState.OFFERED, None))
    assert kw["only_from"] == frozenset({"not_offered", "offered"})
    assert not store.cooldown_lookups  # no cooldown configured: no database read


def test_offer_service_opt_out_matches_any_spelling() -> None:
    settings = Settings(hash_secret="s3cret", opt_out_numbers=["+1 (555) 010-0100"])
    store = FakeStore()
    offer = _decide(OfferService(settings, store), number="+15550100100")  # type: ignore[arg-type]
    assert (offer.decision.offer, offer.decision.reason) == (False, "opted_out")
    _, args, kw = store.writes[1]
    assert args == ("1700000000.1", SurveyState.NOT_OFFERED, "opted_out")
    assert store.writes[0][2]["survey_name"] is None


def test_offer_service_cooldown_reads_the_last_survey_of_this_caller() -> None:
    settings = Settings(hash_secret="s3cret", default_policy=QueuePolicy(cooldown_days=7))
    store = FakeStore(last=AT - timedelta(days=2))
    offer = _decide(OfferService(settings, store))  # type: ignore[arg-type]
    assert offer.decision.reason == "cooldown"
    assert store.cooldown_lookups == [caller_hash("s3cret", "+15550100100")]


def test_offer_service_excluded_queue_and_per_queue_policy() -> None:
    settings = Settings(
        hash_secret="s3cret",
        excluded_queues=["support"],
        queues={"sales": QueuePolicy(sampling_rate=0.0)},
    )
    service = OfferService(settings, FakeStore())  # type: ignore[arg-type]
    assert _decide(service, "1.1").decision.reason == "excluded_queue"
    sales = service.decide(
        uniqueid="1.2", linkedid="1.2", queue="sales", agent="a", caller_number=None, at=AT
    )
    assert sales.decision.reason == "not_sampled"
