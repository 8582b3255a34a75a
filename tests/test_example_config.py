"""The configuration example the README points admins to must stay loadable and mean what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "csat.example.toml"


def test_example_config_loads_with_per_queue_surveys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSAT_CONFIG", str(EXAMPLE))
    settings = load_settings()
    assert settings.survey_for("sales")[0] == "sales"
    assert settings.survey_for("support")[0] == "default"
    assert settings.policy_for("support").cooldown_days == 7
    assert settings.policy_for("sales").excluded_agents == ["trainee1"]
    assert [q.type for q in settings.surveys["sales"].questions] == ["ces", "comment"]
    assert settings.ami.username == "csat" and settings.agi.port == 4573
    assert settings.target_for("sales") == 75 and settings.target_for("support") == 80
    assert settings.teams["escalations"] == ["agent3"]
    assert settings.web.port == 8080 and settings.alerts.max_csat == 2
    assert [(e.name, e.report, e.format) for e in settings.exports] == [
        ("weekly-agents", "agent", "xlsx"),
        ("monthly-training-packs", "agent-report", "pdf"),
    ]
