"""Settings (TOML file, CSAT_* environment, validation) and the ``csat`` command line, run in-process
with typer's CliRunner against a private data dir (and, where a database matters, on both databases).
"""

from __future__ import annotations

import os
import socket
import threading
import wave
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine
from typer.testing import CliRunner

from ivr import db
from ivr.check import run_checks
from ivr.cli import app
from ivr.prompts import missing_prompts
from ivr.settings import DEMO_HASH_SECRET, QuestionConfig, Settings, SurveyConfig, load_settings
from ivr.spool import Spool

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ./csat.toml, no CSAT_* from the shell, and a private data dir for whatever a command writes."""
    for name in [n for n in os.environ if n.startswith("CSAT_")]:
        monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("CSAT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def write_toml(path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("CSAT_CONFIG", str(path))
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOML = """
hash_secret = "from-toml"
excluded_queues = ["internal"]

[ami]
host = "10.0.0.5"
port = 5039
username = "csat-toml"

[agi]
port = 4600

[surveys.short]
language = "fr"
[[surveys.short.questions]]
key = "csat"
type = "csat"
text = "Notez l'agent de 1 a 5."
tries = 2

[surveys.default]
[[surveys.default.questions]]
key = "nps"
type = "nps"
text = "From 0 to 10?"

[queues.sales]
survey = "short"
sampling_rate = 0.25
cooldown_days = 30
excluded_agents = ["boss"]
"""


# -- settings -------------------------------------------------------------------------------------


def test_defaults_without_any_config(isolated: Path) -> None:
    s = load_settings()
    assert s.hash_secret == DEMO_HASH_SECRET
    assert (s.ami.host, s.ami.port, s.agi.port) == ("127.0.0.1", 5038, 4573)
    assert [q.key for q in s.surveys["default"].questions] == ["csat", "fcr", "nps"]
    assert s.resolved_database_url == f"sqlite:///{(isolated / 'data' / 'csat.sqlite3').resolve()}"
    assert s.spool_dir == (isolated / "data" / "spool").resolve()
    assert s.resolved_prompts_dir == (isolated / "data" / "prompts").resolve()


def test_settings_from_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path / "csat.toml", TOML, monkeypatch)
    s = load_settings()
    assert s.hash_secret == "from-toml"
    assert (s.ami.host, s.ami.port, s.ami.username, s.ami.secret) == (
        "10.0.0.5",
        5039,
        "csat-toml",
        "csat-secret",
    )
    assert s.agi.port == 4600
    assert s.excluded_queues == ["internal"]
    sales = s.policy_for("sales")
    assert (sales.survey, sales.sampling_rate, sales.cooldown_days, sales.excluded_agents) == (
        "short",
        0.25,
        30,
        ["boss"],
    )
    assert s.policy_for("support") == s.default_policy
    name, survey = s.survey_for("sales")
    assert (name, [q.key for q in survey.questions], survey.questions[0].tries) == ("short", ["csat"], 2)
    assert s.language_for("sales") == "fr"
    assert s.language_for("support") == "en"


def test_env_overrides_the_toml_file_field_by_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path / "csat.toml", TOML, monkeypatch)
    monkeypatch.setenv("CSAT_AMI__PORT", "6000")
    monkeypatch.setenv("CSAT_HASH_SECRET", "from-env")
    s = load_settings()
    assert s.ami.port == 6000
    assert s.ami.host == "10.0.0.5"  # the rest of [ami] still comes from the file
    assert s.hash_secret == "from-env"
    assert load_settings(hash_secret="explicit").hash_secret == "explicit"  # keywords beat everything


def test_local_csat_toml_is_used_when_csat_config_is_unset(isolated: Path) -> None:
    Path("csat.toml").write_text('hash_secret = "local"\n', encoding="utf-8")
    assert load_settings().hash_secret == "local"


def test_csat_config_pointing_to_a_missing_file(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = isolated / "nope" / "csat.toml"
    monkeypatch.setenv("CSAT_CONFIG", str(missing))
    Path("csat.toml").write_text('hash_secret = "local"\n', encoding="utf-8")  # never a silent fallback
    with pytest.raises(FileNotFoundError, match=f"CSAT_CONFIG points to {missing}, which does not exist"):
        load_settings()


def test_queue_naming_an_unknown_survey(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path / "c.toml", '[queues.sales]\nsurvey = "nope"\n', monkeypatch)
    with pytest.raises(
        ValidationError, match=r"queue 'sales' uses survey 'nope', which is not defined"
    ) as err:
        load_settings()
    assert "(defined: default)" in str(err.value)


def test_default_policy_naming_an_unknown_survey() -> None:
    surveys = {"mine": SurveyConfig(questions=[QuestionConfig(key="a", type="csat", text="t")])}
    with pytest.raises(ValidationError, match="queue 'default_policy' uses survey 'default'"):
        Settings(surveys=surveys)


def test_duplicate_question_keys() -> None:
    q = QuestionConfig(key="csat", type="csat", text="t")
    with pytest.raises(ValidationError, match="question keys must be unique"):
        SurveyConfig(questions=[q, q.model_copy(update={"type": "nps"})])


def test_duplicate_question_keys_from_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "[[surveys.default.questions]]\nkey = 'q'\ntype = 'csat'\ntext = 'a'\n"
        "[[surveys.default.questions]]\nkey = 'q'\ntype = 'yesno'\ntext = 'b'\n"
    )
    write_toml(tmp_path / "c.toml", text, monkeypatch)
    with pytest.raises(ValidationError, match="must be unique"):
        load_settings()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"key": "bad key", "type": "csat"}, "must be letters, digits"),
        ({"key": "ok", "type": "stars"}, "type"),
        ({"key": "ok", "type": "csat", "tries": 0}, "tries"),
        ({"key": "ok", "type": "csat", "tries": 10}, "tries"),
        ({"key": "ok", "type": "csat", "timeout_s": 0}, "timeout_s"),
    ],
)
def test_question_validation(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        QuestionConfig(text="t", **kwargs)  # type: ignore[arg-type]


def test_survey_needs_a_question_and_rates_are_bounded() -> None:
    with pytest.raises(ValidationError, match="at least one question"):
        SurveyConfig(questions=[])
    with pytest.raises(ValidationError, match="sampling_rate"):
        Settings(default_policy={"sampling_rate": 1.5})  # type: ignore[arg-type]


def test_unknown_keys_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path / "c.toml", 'hash_secrett = "typo"\n', monkeypatch)
    with pytest.raises(ValidationError, match="hash_secrett"):
        load_settings()


# -- CLI: configuration errors --------------------------------------------------------------------


def test_cli_invalid_config_exits_2_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSAT_AMI__PORT", "not-a-port")
    result = runner.invoke(app, ["calls"])
    assert result.exit_code == 2
    assert "the configuration is not valid" in result.output
    assert "ami.port:" in result.output
    assert "valid integer" in result.output


def test_cli_unknown_survey_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path / "c.toml", '[queues.sales]\nsurvey = "nope"\n', monkeypatch)
    result = runner.invoke(app, ["calls"])
    assert result.exit_code == 2
    assert "queue 'sales' uses survey 'nope'" in result.output


def test_cli_missing_config_file_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSAT_CONFIG", str(tmp_path / "missing.toml"))
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert f"csat: CSAT_CONFIG points to {tmp_path / 'missing.toml'}, which does not exist" in result.output
    assert not (tmp_path / "data").exists()  # nothing was created


# -- CLI: database commands -----------------------------------------------------------------------


def test_cli_db_upgrade_then_empty_listings(isolated: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "database schema is current" in result.stdout
    assert (isolated / "data" / "csat.sqlite3").is_file()
    calls = runner.invoke(app, ["calls", "--format", "json"])
    assert calls.exit_code == 0, calls.output
    assert calls.stdout.strip() == "[]"
    table = runner.invoke(app, ["calls"])
    assert "(no rows)" in table.stdout


@pytest.fixture
def cli_db(db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("CSAT_DATABASE_URL", db_url)
    yield engine


def test_cli_upgrade_is_idempotent_and_lists_json(cli_db: Engine) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["calls", "--format", "json"])
    assert (result.exit_code, result.stdout.strip()) == (0, "[]")


def test_cli_answers_csv_header_and_rows(cli_db: Engine) -> None:
    empty = runner.invoke(app, ["answers", "--format", "csv"])
    assert empty.exit_code == 0
    assert empty.stdout.splitlines() == [
        "uniqueid,linkedid,queue,agent,question,question_type,value,answered_at"
    ]
    db.upsert_call(cli_db, "1.1", "1.0")
    db.insert_answer(
        cli_db,
        {
            "call_uniqueid": "1.1",
            "linkedid": "1.0",
            "queue": "support",
            "agent": "agent1",
            "survey": "default",
            "question": "nps",
            "question_type": "nps",
            "position": 3,
            "value": 0,
            "tries": 1,
            "answered_at": datetime(2025, 3, 10, 12, 0, 7, 999),
        },
    )
    result = runner.invoke(app, ["answers", "-f", "csv"])
    assert result.stdout.splitlines() == [
        "uniqueid,linkedid,queue,agent,question,question_type,value,answered_at",
        "1.1,1.0,support,agent1,nps,nps,0,2025-03-10T12:00:07Z",
    ]


def test_cli_spool_replay(cli_db: Engine, isolated: Path) -> None:
    spool = Spool(load_settings().spool_dir)
    spool.append("call", {"uniqueid": "9.9", "linkedid": "9.9", "queue": "spooled"})
    result = runner.invoke(app, ["spool", "replay"])
    assert result.exit_code == 0, result.output
    assert "replayed 1 record(s); 0 left" in result.stdout
    assert db.get_call(cli_db, "9.9").queue == "spooled"  # type: ignore[union-attr]


def test_cli_bad_format_is_an_error(isolated: Path) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["calls", "--format", "xml"])
    assert result.exit_code != 0
    assert "unknown format 'xml'" in str(result.exception)


# -- CLI: check -----------------------------------------------------------------------------------


def test_cli_check_against_a_closed_ami_port(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("CSAT_AMI__PORT", str(port))
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 1
    ami_line = next(line for line in result.stdout.splitlines() if "ami:" in line)
    assert ami_line.startswith("[FAIL] ami: cannot reach the Asterisk manager at 127.0.0.1:" + str(port))
    assert "[  ok] database: connected to" in result.stdout
    assert "[WARN] hash_secret" in result.stdout


class FakeManager:
    """Just enough of an AMI port for ``csat check``: a banner and a Login answer."""

    def __init__(self, banner: str, response: str) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.banner, self.response = banner, response
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.sendall(self.banner.encode())
            while b"\r\n\r\n" not in self.received:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                self.received += chunk
            conn.sendall(self.response.encode())
            conn.settimeout(2)
            try:
                while chunk := conn.recv(4096):
                    self.received += chunk
            except OSError:
                pass

    def close(self) -> None:
        self.thread.join(5)
        self.server.close()


def test_check_reports_a_refused_login(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeManager(
        "Asterisk Call Manager/5.0.1\r\n", "Response: Error\r\nMessage: Authentication failed\r\n\r\n"
    )
    monkeypatch.setenv("CSAT_AMI__PORT", str(fake.port))
    monkeypatch.setenv("CSAT_AMI__SECRET", "wrong")
    ami = next(r for r in run_checks(load_settings(), ami_timeout=2) if r.name == "ami")
    fake.close()
    assert (ami.name, ami.ok) == ("ami", False)
    assert "login as 'csat'" in ami.message and "refused (Authentication failed)" in ami.message
    assert b"Action: Login\r\nUsername: csat\r\nSecret: wrong\r\n" in fake.received


def test_check_logs_in_to_a_real_looking_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeManager(
        "Asterisk Call Manager/5.0.1\r\n", "Response: Success\r\nMessage: Authentication accepted\r\n\r\n"
    )
    monkeypatch.setenv("CSAT_AMI__PORT", str(fake.port))
    ami = next(r for r in run_checks(load_settings(), ami_timeout=2) if r.name == "ami")
    fake.close()
    assert ami.ok is True
    assert f"logged in to the Asterisk manager at 127.0.0.1:{fake.port}" in ami.message
    assert b"Action: Logoff" in fake.received


# -- CLI: dialplan and prompts --------------------------------------------------------------------


def test_cli_dialplan_render_to_a_file(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSAT_AGI__HOST", "10.9.8.7")
    monkeypatch.setenv("CSAT_AGI__PORT", "4599")
    out = isolated / "etc" / "csat-survey.conf"
    result = runner.invoke(app, ["dialplan", "render", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    text = out.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert "[csat-survey]" in lines
    agi = [line for line in lines if "AGI(" in line and not line.startswith(";")]
    assert len(agi) == 1
    assert agi[0].startswith(" same => n,AGI(agi://10.9.8.7:4599/survey,${CHANNEL(linkedid)},${QUEUENAME},")
    goodbye = (isolated / "data" / "prompts" / "en" / "goodbye").resolve()
    assert f" same => n,Playback({goodbye})" in lines
    assert f"#include {out.resolve()}" in text
    assert lines.index("[csat-survey]") < lines.index(agi[0])


def test_cli_dialplan_render_to_stdout_uses_defaults(isolated: Path) -> None:
    result = runner.invoke(app, ["dialplan", "render"])
    assert result.exit_code == 0
    assert "AGI(agi://127.0.0.1:4573/survey," in result.stdout
    assert 'exten => s,1,GotoIf($["${MEMBERINTERFACE}" = ""]?noagent)' in result.stdout


def test_cli_prompts_build_writes_8khz_mono_wavs(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """
[default_policy]
survey = "mini"

[surveys.mini]
intro_text = "Hello."
thanks_text = "Thanks."
goodbye_text = "Bye."
[[surveys.mini.questions]]
key = "rate"
type = "csat"
text = "Rate us."
[[surveys.mini.questions]]
key = "why"
type = "comment"
text = "Tell us why."
"""
    write_toml(tmp_path / "mini.toml", text, monkeypatch)
    result = runner.invoke(app, ["prompts", "build"])
    assert result.exit_code == 0, result.output
    prompts = (isolated / "data" / "prompts").resolve()
    expected = sorted(
        [
            prompts / "en" / "mini" / f"{n}.wav"
            for n in ("q-rate", "q-rate-invalid", "q-rate-noinput", "q-why")
        ]
        + [prompts / "en" / "mini" / "thanks.wav", prompts / "en" / "mini" / "goodbye.wav"]
        + [prompts / "en" / "goodbye.wav"]
    )
    assert sorted(prompts.rglob("*.wav")) == expected
    assert f"{len(expected)} prompt file(s) written under {prompts}" in result.stdout
    for path in expected:
        with wave.open(str(path), "rb") as w:
            assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (1, 8000, 2), path
            assert w.getnframes() > 8000 * 0.2, path  # real speech, not an empty header
    assert missing_prompts(load_settings()) == []
    assert not list(prompts.rglob("*.tmp.wav"))
