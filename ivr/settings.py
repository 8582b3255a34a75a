"""One typed settings object for csat: defaults run the demo, a TOML file and CSAT_* variables override.

Precedence (highest first): explicit keyword arguments, environment variables (``CSAT_*``, nested with
``__``, e.g. ``CSAT_AMI__SECRET``), the TOML file (``CSAT_CONFIG`` or ``./csat.toml``), defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

QuestionType = Literal["csat", "nps", "ces", "yesno", "comment"]

DEMO_HASH_SECRET = "demo-only-change-me"


class AmiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "csat"
    secret: str = "csat-secret"
    ping_interval_s: float = 5.0
    transcript_path: Path | None = None


class AgiSettings(BaseModel):
    """Where ``csat serve`` listens for FastAGI; the dialplan's AGI() URL points here."""

    host: str = "127.0.0.1"
    port: int = 4573


class QuestionConfig(BaseModel):
    key: str
    type: QuestionType
    text: str
    tries: int = Field(default=3, ge=1, le=9)
    timeout_s: float = Field(default=5.0, gt=0, le=30)
    invalid_text: str | None = None
    max_record_s: int = Field(default=30, ge=1, le=30)

    @field_validator("key")
    @classmethod
    def _key_is_a_name(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "_-" for c in v):
            raise ValueError(f"question key {v!r} must be letters, digits, '-' or '_'")
        return v


class SurveyConfig(BaseModel):
    questions: list[QuestionConfig]
    language: str = "en"
    voice: str | None = None
    intro_text: str | None = "Thank you for calling. Please answer a short survey about your call."
    thanks_text: str = "Thank you for your feedback. Goodbye."
    goodbye_text: str = "Thank you for calling. Goodbye."
    invalid_text: str = "Sorry, that is not a valid answer."
    noinput_text: str = "Sorry, I did not hear an answer."

    @model_validator(mode="after")
    def _unique_keys(self) -> SurveyConfig:
        keys = [q.key for q in self.questions]
        if len(keys) != len(set(keys)):
            raise ValueError(f"question keys must be unique in a survey, got {keys}")
        if not keys:
            raise ValueError("a survey needs at least one question")
        return self


class QueuePolicy(BaseModel):
    """Who is offered a survey in one queue; applied when the agent answers, blind to how the call goes."""

    survey: str = "default"
    enabled: bool = True
    sampling_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    cooldown_days: float = Field(default=0.0, ge=0.0)
    min_talk_seconds: int = Field(default=0, ge=0)
    excluded_agents: list[str] = Field(default_factory=list)
    language: str | None = None
    csat_target_pct: float | None = Field(default=None, ge=0, le=100)


class ScoringSettings(BaseModel):
    """How figures are judged: minimum answers, confidence, bands (ACSI reading) and the default target."""

    min_responses: int = Field(default=10, ge=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    good_pct: float = Field(default=80.0, ge=0, le=100)
    poor_pct: float = Field(default=60.0, ge=0, le=100)
    target_pct: float | None = Field(default=80.0, ge=0, le=100)
    rollup_interval_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _bands_ordered(self) -> ScoringSettings:
        if self.poor_pct > self.good_pct:
            raise ValueError(
                f"scoring.poor_pct ({self.poor_pct}) must not be above good_pct ({self.good_pct})"
            )
        return self


ReportBy = Literal["agent", "queue", "team", "question"]
ReportPeriod = Literal["day", "week", "month"]
ExportFormat = Literal["csv", "json", "xlsx", "pdf"]
ExportRange = Literal[
    "yesterday",
    "last_7_days",
    "last_30_days",
    "previous_week",
    "previous_month",
    "week_to_date",
    "month_to_date",
]


DEMO_WEB_SECRET = "demo-only-session-key-change-me"


class WebSettings(BaseModel):
    """The dashboard ``csat serve`` runs beside the survey server (FastAPI on 127.0.0.1:8080)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    secret_key: str = DEMO_WEB_SECRET  # signs session cookies; set a long random value
    session_max_age_s: int = Field(default=8 * 3600, ge=60)
    secure_cookies: bool = False  # set true behind HTTPS
    login_attempts_per_minute: int = Field(default=5, ge=1)
    live_poll_s: float = Field(default=2.0, gt=0)


class AlertSettings(BaseModel):
    """Which answers raise a low-score alert for the agent's supervisor, and where to POST them."""

    enabled: bool = True
    max_csat: int = Field(default=2, ge=1, le=5)  # a CSAT rating at or below this raises an alert
    max_ces: int | None = Field(default=2, ge=1, le=7)
    nps_detractors: bool = True  # NPS 0–6
    fcr_no: bool = False
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    scan_interval_s: float = Field(default=5.0, gt=0)


class SmtpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    from_addr: str = "csat@localhost"
    timeout_s: float = 30.0


class ExportJob(BaseModel):
    """One scheduled export (``[[exports]]``): a report rendered on a cron schedule, filed and/or mailed.

    ``report`` is ``agent``, ``queue``, ``team`` or ``question`` (a ranked table grouped that way) or
    ``agent-report`` (the training PDF for each agent in ``agents``, or every agent with answers).
    """

    name: str
    cron: str
    report: Literal["agent", "queue", "team", "question", "agent-report"] = "agent"
    period: ReportPeriod | None = None
    range: ExportRange = "previous_week"
    format: ExportFormat = "xlsx"
    queue: str | None = None
    question: str | None = None
    agents: list[str] = Field(default_factory=list)
    folder: Path | None = None
    email_to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_a_destination(self) -> ExportJob:
        if self.folder is None and not self.email_to:
            raise ValueError(f"export {self.name!r} needs a folder and/or email_to")
        if self.report == "agent-report" and self.format != "pdf":
            raise ValueError(f'export {self.name!r}: agent-report is a PDF (format = "pdf")')
        return self


def _default_surveys() -> dict[str, SurveyConfig]:
    return {
        "default": SurveyConfig(
            questions=[
                QuestionConfig(
                    key="csat",
                    type="csat",
                    text="How satisfied are you with the agent who helped you? "
                    "Press 1 for very dissatisfied, up to 5 for very satisfied.",
                ),
                QuestionConfig(
                    key="fcr",
                    type="yesno",
                    text="Was your problem solved on this call? Press 1 for yes, or 2 for no.",
                ),
                QuestionConfig(
                    key="nps",
                    type="nps",
                    text="How likely are you to recommend us to a friend? "
                    "Enter a number from 0 to 10, then press the pound key.",
                ),
            ]
        ),
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CSAT_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Path("var")
    database_url: str | None = None
    hash_secret: str = DEMO_HASH_SECRET
    timezone: str = "UTC"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    ami: AmiSettings = Field(default_factory=AmiSettings)
    agi: AgiSettings = Field(default_factory=AgiSettings)
    surveys: dict[str, SurveyConfig] = Field(default_factory=_default_surveys)
    default_policy: QueuePolicy = Field(default_factory=QueuePolicy)
    queues: dict[str, QueuePolicy] = Field(default_factory=dict)
    excluded_queues: list[str] = Field(default_factory=list)
    opt_out_numbers: list[str] = Field(default_factory=list)
    prompts_dir: Path | None = None
    spool_replay_interval_s: float = 10.0
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    teams: dict[str, list[str]] = Field(default_factory=dict)
    exports: list[ExportJob] = Field(default_factory=list)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = config_file_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @model_validator(mode="after")
    def _queues_name_known_surveys(self) -> Settings:
        for name, policy in {"default_policy": self.default_policy, **self.queues}.items():
            if policy.survey not in self.surveys:
                raise ValueError(
                    f"queue {name!r} uses survey {policy.survey!r}, which is not defined under [surveys]"
                    f" (defined: {', '.join(sorted(self.surveys))})"
                )
        return self

    # Derived locations: one data dir holds everything csat writes, so an admin backs up one folder.
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'csat.sqlite3').resolve()}"

    @property
    def resolved_prompts_dir(self) -> Path:
        return (self.prompts_dir or self.data_dir / "prompts").resolve()

    @property
    def recordings_dir(self) -> Path:
        return (self.data_dir / "recordings").resolve()

    @property
    def spool_dir(self) -> Path:
        return (self.data_dir / "spool").resolve()

    @field_validator("database_url")
    @classmethod
    def _psycopg2_driver(cls, v: str | None) -> str | None:
        """csat ships psycopg2; SQLAlchemy 2.1 maps a bare postgresql:// URL to psycopg 3, which it lacks."""
        if v is None:
            return v
        for bare in ("postgresql://", "postgres://"):
            if v.startswith(bare):
                return "postgresql+psycopg2://" + v.removeprefix(bare)
        return v

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as 'Europe/Berlin'") from None
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def target_for(self, queue: str | None) -> float | None:
        """A queue's CSAT target, else the global one."""
        if queue is not None and queue in self.queues and self.queues[queue].csat_target_pct is not None:
            return self.queues[queue].csat_target_pct
        return self.scoring.target_pct

    def policy_for(self, queue: str) -> QueuePolicy:
        return self.queues.get(queue, self.default_policy)

    def survey_for(self, queue: str) -> tuple[str, SurveyConfig]:
        name = self.policy_for(queue).survey
        return name, self.surveys[name]

    def language_for(self, queue: str) -> str:
        name, survey = self.survey_for(queue)
        return self.policy_for(queue).language or survey.language


def config_file_path() -> Path | None:
    """The TOML file in force: ``CSAT_CONFIG`` if set (it must exist), else ``./csat.toml`` if present."""
    explicit = os.environ.get("CSAT_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"CSAT_CONFIG points to {path}, which does not exist")
        return path
    local = Path("csat.toml")
    return local if local.is_file() else None


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
