"""CSV imports (scoring.importer) on SQLite and PostgreSQL: historical answers land in UTC on the right
local day, a re-import stores nothing new, a bad file stores nothing at all and says which line is wrong;
agents import creates/updates teams, and the agents table overrides the config's ``[teams]``.
"""

from __future__ import annotations

import hashlib
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ivr.models import Agent, Answer, Call
from ivr.settings import Settings
from scoring import importer
from scoring.importer import (
    CsvImportError,
    derived_call_id,
    import_agents,
    import_answers,
)
from scoring.teams import agents_in_team, team_map

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
HEADER = "timestamp,agent,queue,question,value\n"


@pytest.fixture(autouse=True)
def _no_local_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings() must see only what a test gives it: no ./csat.toml, no CSAT_* from the shell."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CSAT_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def berlin() -> Settings:
    return Settings(timezone="Europe/Berlin")


def write(tmp_path: Path, text: str, name: str = "answers.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def stored(engine: Engine) -> list[Answer]:
    with Session(engine) as s:
        return list(s.scalars(select(Answer).order_by(Answer.id)).all())


def count(engine: Engine, model: Any) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


# -- answers: what gets stored -----------------------------------------------------------------------


def test_example_file_is_stored_with_utc_times_and_one_call_per_time_agent_queue(
    engine: Engine, berlin: Settings
) -> None:
    result = import_answers(engine, EXAMPLES / "answers.csv", berlin)

    assert (result.rows, result.inserted, result.skipped) == (11, 11, 0)
    assert result.days == {date(2025, 3, 10), date(2025, 3, 11)}
    rows = stored(engine)
    by_call: dict[str, list[Answer]] = {}
    for a in rows:
        by_call.setdefault(a.call_uniqueid, []).append(a)
    assert len(by_call) == 5

    # Local 09:12:40 in Berlin in March (CET, UTC+1) is 08:12:40 UTC; three questions, one call.
    first = by_call[derived_call_id(datetime(2025, 3, 10, 8, 12, 40), "agent1", "support")]
    assert [(a.question, a.question_type, a.value, a.position) for a in first] == [
        ("csat", "csat", 5, 1),
        ("fcr", "yesno", 1, 2),
        ("nps", "nps", 9, 3),
    ]
    assert all(a.answered_at == datetime(2025, 3, 10, 8, 12, 40) for a in first)
    assert {(a.survey, a.tries, a.linkedid, a.agent, a.queue) for a in first} == {
        ("import", 1, first[0].call_uniqueid, "agent1", "support")
    }
    assert [
        a.value for a in by_call[derived_call_id(datetime(2025, 3, 10, 10, 47, 3), "agent2", "support")]
    ] == [
        2,
        0,
        3,
    ]
    # An explicit call_id is kept; the offset is respected; the comment has no value.
    explicit = by_call["1741698300.42"]
    assert [(a.question, a.question_type, a.value, a.answered_at) for a in explicit] == [
        ("ces", "ces", 6, datetime(2025, 3, 11, 13, 5)),
        ("comment", "comment", None, datetime(2025, 3, 11, 13, 5)),
    ]
    assert by_call["1741699231.57"][0].answered_at == datetime(2025, 3, 11, 13, 20, 31)
    assert count(engine, Call) == 0


def test_local_time_after_midnight_is_the_previous_utc_day_but_the_local_day_in_days(
    engine: Engine, berlin: Settings, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        HEADER + "2025-03-11 00:30:00,agent1,support,csat,4\n"  # CET: 2025-03-10 23:30 UTC
        "2025-07-01T01:15:00,agent2,support,csat,5\n",  # CEST: 2025-06-30 23:15 UTC
    )

    result = import_answers(engine, path, berlin)

    assert [a.answered_at for a in stored(engine)] == [
        datetime(2025, 3, 10, 23, 30),
        datetime(2025, 6, 30, 23, 15),
    ]
    assert result.days == {date(2025, 3, 11), date(2025, 7, 1)}


def test_offset_and_local_time_of_the_same_instant_are_the_same_call(
    engine: Engine, berlin: Settings, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        HEADER + "2025-03-10 10:00:00,agent1,support,csat,4\n"
        "2025-03-10T09:00:00Z,agent1,support,fcr,y\n"
        "2025-03-10T11:00:00+02:00,agent1,support,nps,10\n",
    )

    import_answers(engine, path, berlin)

    digest = hashlib.sha256(b"2025-03-10T09:00:00|agent1|support").hexdigest()[:20]
    assert [(a.call_uniqueid, a.question, a.position) for a in stored(engine)] == [
        (f"import-{digest}", "csat", 1),
        (f"import-{digest}", "fcr", 2),
        (f"import-{digest}", "nps", 3),
    ]


def test_repeated_autumn_hour_is_its_first_occurrence(
    engine: Engine, berlin: Settings, tmp_path: Path
) -> None:
    path = write(tmp_path, HEADER + "2025-10-26 02:30:00,agent1,support,csat,3\n")

    import_answers(engine, path, berlin)

    assert [a.answered_at for a in stored(engine)] == [datetime(2025, 10, 26, 0, 30)]  # CEST, UTC+2


def test_reimport_stores_nothing_new_and_a_longer_file_adds_only_its_new_rows(
    engine: Engine, berlin: Settings, tmp_path: Path
) -> None:
    import_answers(engine, EXAMPLES / "answers.csv", berlin)
    before = [(a.call_uniqueid, a.question, a.value) for a in stored(engine)]

    again = import_answers(engine, EXAMPLES / "answers.csv", berlin)

    assert (again.rows, again.inserted, again.skipped, again.days) == (11, 0, 11, set())
    assert [(a.call_uniqueid, a.question, a.value) for a in stored(engine)] == before

    longer = (EXAMPLES / "answers.csv").read_text() + "2025-03-12 08:00:00,agent1,support,csat,1,,\n"
    more = import_answers(engine, write(tmp_path, longer, "more.csv"), berlin)
    assert (more.rows, more.inserted, more.skipped, more.days) == (12, 1, 11, {date(2025, 3, 12)})
    assert count(engine, Answer) == 12


def test_identical_rows_in_one_file_are_stored_once(engine: Engine, berlin: Settings, tmp_path: Path) -> None:
    row = "2025-03-10 10:00:00,agent1,support,csat,4\n"
    result = import_answers(engine, write(tmp_path, HEADER + row + row), berlin)

    assert (result.rows, result.inserted, result.skipped) == (2, 1, 1)
    assert count(engine, Answer) == 1


def test_yesno_words_and_digits(engine: Engine, berlin: Settings, tmp_path: Path) -> None:
    words = ["yes", "no", "Y", "n", "1", "0", "YES", " No "]
    body = "".join(f"2025-03-10 10:{i:02d}:00,agent1,support,fcr,{w}\n" for i, w in enumerate(words))

    import_answers(engine, write(tmp_path, HEADER + body), berlin)

    assert [(a.question_type, a.value) for a in stored(engine)] == [
        ("yesno", v) for v in (1, 0, 1, 0, 1, 0, 1, 0)
    ]


def test_comment_rows_and_question_type_column_for_unconfigured_questions(
    engine: Engine, berlin: Settings, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "question_type,timestamp,agent,queue,question,value\n"
        "comment,2025-03-10 10:00:00,agent1,support,voicemail,\n"
        "ces,2025-03-10 10:00:00,agent1,support,effort,7\n"
        ",2025-03-10 10:00:00,agent1,support,csat,5\n"
        "csat,2025-03-10 10:05:00,agent2,support,csat,1\n",
    )

    import_answers(engine, path, berlin)

    assert [(a.question, a.question_type, a.value, a.recording, a.position) for a in stored(engine)] == [
        ("voicemail", "comment", None, None, 1),
        ("effort", "ces", 7, None, 2),
        ("csat", "csat", 5, None, 3),
        ("csat", "csat", 1, None, 1),
    ]


def test_excel_bom_semicolons_header_case_and_trailing_empty_cells(
    engine: Engine, berlin: Settings, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        " Timestamp ;AGENT;Queue;Question;Value\r\n2025-03-10 10:00:00;agent1;support;nps;0;;\r\n\r\n",
        encoding="utf-8-sig",
    )

    result = import_answers(engine, path, berlin)

    assert result.rows == 1
    assert [(a.question, a.value) for a in stored(engine)] == [("nps", 0)]


def test_progress_counts_up_to_the_distinct_answers(
    engine: Engine, berlin: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH", 2)
    calls: list[tuple[int, int]] = []

    import_answers(engine, EXAMPLES / "answers.csv", berlin, progress=lambda d, t: calls.append((d, t)))

    assert calls == [(0, 11), (2, 11), (4, 11), (6, 11), (8, 11), (10, 11), (11, 11)]


def test_a_failure_while_writing_rolls_back_every_batch(
    engine: Engine, berlin: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH", 2)

    def fail_after_two_batches(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt  # the operator pressing Ctrl-C mid-import

    with pytest.raises(KeyboardInterrupt):
        import_answers(engine, EXAMPLES / "answers.csv", berlin, progress=fail_after_two_batches)

    assert count(engine, Answer) == 0


# -- answers: bad files store nothing ----------------------------------------------------------------

GOOD = "2025-03-10 10:00:00,agent1,support,csat,4\n2025-03-10 10:00:00,agent1,support,fcr,yes\n"


LATER = "2025-03-10 11:00:00,agent2,support,"  # a row after GOOD, on line 4


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (HEADER + GOOD + LATER + "csat,6\n", 4, "value '6' is out of range 1–5 for csat question 'csat'"),
        (HEADER + GOOD + LATER + "nps,11\n", 4, "value '11' is out of range 0–10 for nps question 'nps'"),
        (
            HEADER + GOOD + LATER + "csat,4.5\n",
            4,
            "value '4.5' is not a whole number for csat question 'csat'",
        ),
        (HEADER + GOOD + LATER + "csat,\n", 4, "value is empty for csat question 'csat'"),
        (
            HEADER + GOOD + LATER + "fcr,maybe\n",
            4,
            "value 'maybe' is not 1/0 or yes/no for yesno question 'fcr'",
        ),
        (HEADER + GOOD + "10/03/2025 11:00,agent2,support,csat,4\n", 4, "'10/03/2025 11:00' is not ISO 8601"),
        (HEADER + GOOD + "2025-03-10,agent2,support,csat,4\n", 4, "'2025-03-10' has no time of day"),
        (
            HEADER + GOOD + "2025-03-30 02:30:00,agent2,support,csat,4\n",
            4,
            "timestamp '2025-03-30 02:30:00' does not exist in Europe/Berlin",
        ),
        (
            HEADER + GOOD + LATER + "mood,4\n",
            4,
            "unknown question 'mood': no configured survey asks it (known: csat, fcr, nps)",
        ),
        (HEADER + GOOD + "2025-03-10 11:00:00,,support,csat,4\n", 4, "agent is empty"),
        (HEADER + GOOD + f"2025-03-10 11:00:00,{'a' * 129},q,csat,4\n", 4, "longer than 128 characters"),
        (HEADER + GOOD + LATER + "csat\n", 4, "has 4 fields but the header has 5"),
        (
            HEADER + GOOD + "2025-03-10 10:00:00,agent1,support,csat,5\n",
            4,
            "already has question 'csat' on line 2 with value 4, here 5",
        ),
        ("timestamp,agent,queue,question\n" + GOOD, 1, "missing column(s) 'value'"),
        (HEADER.strip() + ",note\n" + GOOD.replace("\n", ",x\n"), 1, "unknown column(s) 'note'"),
        (
            HEADER.strip() + ",value\n" + GOOD.replace("\n", ",1\n"),
            1,
            "column(s) 'value' appear more than once",
        ),
        ("", 1, "the file is empty"),
    ],
)
def test_a_bad_file_names_the_line_and_stores_nothing(
    engine: Engine, berlin: Settings, tmp_path: Path, text: str, line: int, problem: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(CsvImportError) as caught:
        import_answers(engine, path, berlin)

    assert str(caught.value).startswith(f"{path} line {line}: ")
    assert problem in str(caught.value)
    assert caught.value.line == line
    assert isinstance(caught.value, ValueError)
    assert count(engine, Answer) == 0


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (
            "2025-03-10 11:00:00,agent2,support,csat,4,nps",
            "'csat' is a csat question in the configured surveys",
        ),
        ("2025-03-10 11:00:00,agent2,support,csat,4,stars", "question_type 'stars' is not one of"),
        (
            "2025-03-10 11:00:00,agent2,support,mood,4,ces",
            "'mood' has question_type 'ces', but 'csat' on line 2",
        ),
        ("2025-03-10 11:00:00,agent2,support,remark,hi,comment", "value must be empty for comment question"),
        ("2025-03-10 11:00:00,agent2,support,bad key,4,csat", "must be letters, digits, '-' or '_'"),
    ],
)
def test_question_type_column_problems(
    engine: Engine, berlin: Settings, tmp_path: Path, row: str, problem: str
) -> None:
    path = write(
        tmp_path,
        "timestamp,agent,queue,question,value,question_type\n2025-03-10 10:00:00,agent1,support,mood,4,csat\n"
        + row
        + "\n",
    )

    with pytest.raises(CsvImportError, match=f"^{path} line 3: ") as caught:
        import_answers(engine, path, berlin)

    assert problem in str(caught.value)
    assert count(engine, Answer) == 0


def test_every_bad_row_is_listed_up_to_a_limit(engine: Engine, berlin: Settings, tmp_path: Path) -> None:
    bad = "".join(f"2025-03-10 10:{i:02d}:00,agent1,support,csat,9\n" for i in range(25))
    path = write(tmp_path, HEADER + GOOD + bad)

    with pytest.raises(CsvImportError) as caught:
        import_answers(engine, path, berlin)

    lines = str(caught.value).splitlines()
    assert caught.value.total == 25
    assert [n for n, _ in caught.value.problems] == list(range(4, 24))
    assert lines[0] == f"{path} line 4: value '9' is out of range 1–5 for csat question 'csat'"
    assert lines[-1] == f"{path}: … and 5 more problems"
    assert count(engine, Answer) == 0


def test_a_file_that_is_not_utf8_is_refused(engine: Engine, berlin: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + GOOD, encoding="utf-16")

    with pytest.raises(CsvImportError, match="is not UTF-8 text"):
        import_answers(engine, path, berlin)

    assert count(engine, Answer) == 0


# -- agents and teams --------------------------------------------------------------------------------


def agents_table(engine: Engine) -> dict[str, tuple[str | None, str | None, str | None]]:
    with Session(engine) as s:
        return {a.agent: (a.team, a.display_name, a.email) for a in s.scalars(select(Agent)).all()}


def test_agents_import_creates_then_updates_only_what_changed(engine: Engine, tmp_path: Path) -> None:
    first = import_agents(engine, EXAMPLES / "agents.csv")

    assert (first.rows, first.created, first.updated, first.unchanged) == (4, 4, 0, 0)
    assert agents_table(engine) == {
        "agent1": ("Team Blue", "Anna Schmidt", "anna.schmidt@example.com"),
        "agent2": ("Team Blue", "Ben Keller", "ben.keller@example.com"),
        "agent3": ("Team Red", "Carla Rossi", None),
        "trainee1": ("Team Red", None, None),
    }

    # agent1 moves team (a blank email keeps the stored one), agent3 gains an email, agent4 is new;
    # agent2 is the same, trainee1 is not in the file: both stay as they are.
    second = import_agents(
        engine,
        write(
            tmp_path,
            "email,agent,team\n,agent1,Team Red\nben.keller@example.com,agent2,Team Blue\n"
            "carla@example.com,agent3,Team Red\n,agent4,Team Blue\n",
            "agents.csv",
        ),
    )

    assert (second.rows, second.created, second.updated, second.unchanged) == (4, 1, 2, 1)
    assert agents_table(engine) == {
        "agent1": ("Team Red", "Anna Schmidt", "anna.schmidt@example.com"),
        "agent2": ("Team Blue", "Ben Keller", "ben.keller@example.com"),
        "agent3": ("Team Red", "Carla Rossi", "carla@example.com"),
        "agent4": ("Team Blue", None, None),
        "trainee1": ("Team Red", None, None),
    }

    again = import_agents(engine, EXAMPLES / "agents.csv")
    assert (again.created, again.updated, again.unchanged) == (0, 1, 3)  # agent1 back to Team Blue


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("agent,team\nagent1,Team Blue\n,Team Red\n", 3, "agent is empty"),
        ("agent,team\nagent1,Team Blue\nagent2,\n", 3, "team is empty"),
        (
            "agent,team\nagent1,Team Blue\nagent1,Team Red\n",
            3,
            "agent 'agent1' is already on line 2 with team 'Team Blue'",
        ),
        ("agent,team,email\nagent1,Team Blue,\nagent2,Team Red,nobody\n", 3, "is not an e-mail address"),
        ("agent,display_name\nagent1,Anna\n", 1, "missing column(s) 'team'"),
        ("agent,team,phone\nagent1,Team Blue,123\n", 1, "unknown column(s) 'phone'"),
    ],
)
def test_a_bad_agents_file_names_the_line_and_changes_nothing(
    engine: Engine, tmp_path: Path, text: str, line: int, problem: str
) -> None:
    import_agents(engine, EXAMPLES / "agents.csv")
    before = agents_table(engine)
    path = write(tmp_path, text, "agents.csv")

    with pytest.raises(CsvImportError) as caught:
        import_agents(engine, path)

    assert str(caught.value).startswith(f"{path} line {line}: ")
    assert problem in str(caught.value)
    assert agents_table(engine) == before


def test_identical_agent_rows_are_one_agent(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "agent,team\nagent1,Team Blue\nagent1,Team Blue\n", "agents.csv")

    result = import_agents(engine, path)

    assert (result.rows, result.created) == (2, 1)
    assert agents_table(engine) == {"agent1": ("Team Blue", None, None)}


def test_team_map_takes_the_config_then_the_agents_table_on_top(engine: Engine, tmp_path: Path) -> None:
    settings = Settings(teams={"Team Green": ["agent1", "agent9"], "Team Red": ["agent8"]})
    assert team_map(engine, settings) == {
        "agent1": "Team Green",
        "agent9": "Team Green",
        "agent8": "Team Red",
    }

    import_agents(engine, EXAMPLES / "agents.csv")

    assert team_map(engine, settings) == {
        "agent1": "Team Blue",  # the import overrides the config
        "agent2": "Team Blue",
        "agent3": "Team Red",
        "trainee1": "Team Red",
        "agent8": "Team Red",  # config only
        "agent9": "Team Green",
    }
    assert agents_in_team(engine, settings, "Team Red") == ["agent3", "agent8", "trainee1"]
    assert agents_in_team(engine, settings, "Team Green") == ["agent9"]
    assert agents_in_team(engine, settings, "Team Purple") == []
