"""Who may see what: pure rules, no web framework, so every route asks the same questions.

- admin: everything, including users and the settings view.
- supervisor: the agents of the teams they are assigned; works the low-score alerts of those agents.
- trainer: scores and exports of their teams' agents; no alert workflow.
- agent: only their own scores, calls and comments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ivr.models import Role


@dataclass(frozen=True)
class Viewer:
    name: str
    role: Role
    teams: frozenset[str] = frozenset()
    agent: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def can_see_agent(viewer: Viewer, agent: str, team_of: Mapping[str, str]) -> bool:
    if viewer.role == Role.ADMIN:
        return True
    if viewer.role == Role.AGENT:
        return viewer.agent is not None and agent == viewer.agent
    return team_of.get(agent) in viewer.teams


def visible_agents(viewer: Viewer, agents: Iterable[str], team_of: Mapping[str, str]) -> set[str]:
    return {a for a in agents if can_see_agent(viewer, a, team_of)}


def can_see_team(viewer: Viewer, team: str) -> bool:
    if viewer.role == Role.ADMIN:
        return True
    return viewer.role in (Role.SUPERVISOR, Role.TRAINER) and team in viewer.teams


def can_see_overview(viewer: Viewer) -> bool:
    """Centre-wide figures, queues side by side, the leaderboard: everyone but agents."""
    return viewer.role in (Role.ADMIN, Role.SUPERVISOR, Role.TRAINER)


def can_work_alerts(viewer: Viewer) -> bool:
    return viewer.role in (Role.ADMIN, Role.SUPERVISOR)


def can_manage_users(viewer: Viewer) -> bool:
    return viewer.role == Role.ADMIN
