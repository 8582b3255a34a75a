"""Which team each agent is in, for team reports.

Two sources: the settings' ``[teams]`` (team → list of agents) and the ``agents`` table that
``csat agents import agents.csv`` fills. The table wins where both name an agent, because an import is
the most recent statement of who is where. Reports use today's membership for the whole range.
"""

from __future__ import annotations

from sqlalchemy import Engine, select

from ivr.models import Agent
from ivr.settings import Settings


def team_map(engine: Engine, settings: Settings) -> dict[str, str]:
    """agent → team."""
    out = {agent: team for team, agents in settings.teams.items() for agent in agents}
    with engine.connect() as conn:
        for agent, team in conn.execute(select(Agent.agent, Agent.team)):
            if team:
                out[agent] = team
    return out


def agents_in_team(engine: Engine, settings: Settings, team: str) -> list[str]:
    """The team's agents (sorted), by the same precedence as :func:`team_map`."""
    return sorted(a for a, t in team_map(engine, settings).items() if t == team)


def known_agents(engine: Engine) -> set[str]:
    """Every agent csat has heard of: in answers, in calls or in the agents table."""
    from ivr.models import Answer, Call

    with engine.connect() as conn:
        names = set(conn.execute(select(Answer.agent).distinct()).scalars())
        names |= set(conn.execute(select(Call.agent).distinct()).scalars())
        names |= set(conn.execute(select(Agent.agent)).scalars())
    names.discard(None)  # type: ignore[arg-type]
    return names
