"""The access rules every page and API route asks: pure, so each role's limits are checked in one place."""

from __future__ import annotations

import pytest

from ivr.models import Role
from scoring.web.access import (
    Viewer,
    can_manage_users,
    can_see_agent,
    can_see_overview,
    can_see_team,
    can_work_alerts,
    visible_agents,
)

TEAM_OF = {"alice": "nord", "bob": "nord", "carol": "sued"}
ADMIN = Viewer("root", Role.ADMIN)
SUP = Viewer("sup", Role.SUPERVISOR, frozenset({"nord"}))
TRAINER = Viewer("tr", Role.TRAINER, frozenset({"sued"}))
AGENT = Viewer("alice", Role.AGENT, agent="alice")
NO_AGENT = Viewer("ghost", Role.AGENT, agent=None)


@pytest.mark.parametrize(
    ("viewer", "expected"),
    [
        (ADMIN, {"alice", "bob", "carol", "dave"}),
        (SUP, {"alice", "bob"}),
        (TRAINER, {"carol"}),
        (AGENT, {"alice"}),
        (NO_AGENT, set()),
    ],
    ids=["admin", "supervisor", "trainer", "agent", "agent-without-member-name"],
)
def test_visible_agents(viewer: Viewer, expected: set[str]) -> None:
    # dave is in no team: only an admin sees him.
    assert visible_agents(viewer, ["alice", "bob", "carol", "dave"], TEAM_OF) == expected


def test_teams_overview_alerts_users() -> None:
    assert [can_see_team(v, "nord") for v in (ADMIN, SUP, TRAINER, AGENT)] == [True, True, False, False]
    assert [can_see_overview(v) for v in (ADMIN, SUP, TRAINER, AGENT)] == [True, True, True, False]
    assert [can_work_alerts(v) for v in (ADMIN, SUP, TRAINER, AGENT)] == [True, True, False, False]
    assert [can_manage_users(v) for v in (ADMIN, SUP, TRAINER, AGENT)] == [True, False, False, False]


def test_an_agent_named_like_a_team_gains_nothing() -> None:
    sneaky = Viewer("nord", Role.AGENT, agent="nord")
    assert not can_see_team(sneaky, "nord")
    assert not can_see_agent(sneaky, "alice", TEAM_OF)
