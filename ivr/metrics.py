"""The survey server's own Prometheus metrics, kept in one registry that ``GET /metrics`` serves.

Most of what ``/metrics`` reports (surveys by state, answers stored) is read from the database at
scrape time, so it is right even after a restart. Only what the database cannot know lives here: how
long a caller waits in silence before csat's first prompt. This module imports nothing from the
dashboard, so the telephony side never depends on ``scoring.web``.

Dead air, as measured here, is csat's own share of the silence: from the FastAGI connection being
accepted to the first prompt's playback command being sent to Asterisk. It covers reading the AGI
environment, storing the call, the offer decision and the survey start. It does not cover Asterisk
connecting to csat before that, nor the time Asterisk takes to open the sound file after it.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Histogram

#: Everything the process measures itself. A registry of our own, not prometheus_client's global one:
#: tests and several apps in one process then never collide over metric names.
REGISTRY = CollectorRegistry(auto_describe=True)

#: Seconds are tight on purpose: callers notice silence above about half a second.
DEAD_AIR_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)

DEAD_AIR = Histogram(
    "csat_survey_dead_air_seconds",
    "Silence before the first survey prompt that csat causes: FastAGI connection accepted to first "
    "prompt sent.",
    buckets=DEAD_AIR_BUCKETS,
    registry=REGISTRY,
)


def observe_dead_air(accepted_monotonic: float | None) -> None:
    """Record the wait since ``accepted_monotonic`` (a ``time.monotonic()`` reading); None = not known.

    None comes from callers that run a survey without a FastAGI socket (unit tests, simulations):
    their timing says nothing about a caller's silence, so it is not recorded.
    """
    if accepted_monotonic is None:
        return
    DEAD_AIR.observe(max(0.0, time.monotonic() - accepted_monotonic))
