"""CSV imports: past answers (``csat import``) and who is in which team (``csat agents import``).

Both importers are all-or-nothing: the whole file is checked before anything is written, and then written
in one transaction. A supervisor fixing a spreadsheet must be able to re-run the import after any error
without wondering which half of the file is already in the database; every problem names the file and
its 1-based line (the header is line 1), as a spreadsheet shows it.

Files are UTF-8 (Excel's BOM is accepted); the delimiter is ``,``, or ``;`` or a tab when the header uses
one (Excel writes ``;`` in many European locales). Empty lines are ignored. Column order is free;
unknown columns are an error so that a misspelt optional column is not silently ignored.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from os import PathLike, fspath
from typing import Any, get_args
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, select

from ivr.db import _insert
from ivr.models import Agent, Answer, utcnow
from ivr.settings import QuestionType, Settings
from scoring.periods import local_date

Progress = Callable[[int, int], None]
StrPath = str | PathLike[str]

ANSWER_COLUMNS = ("timestamp", "agent", "queue", "question", "value")
ANSWER_OPTIONAL_COLUMNS = ("question_type", "call_id")
AGENT_COLUMNS = ("agent", "team")
AGENT_OPTIONAL_COLUMNS = ("display_name", "email")

#: The ``survey`` stored on imported answers, so reports can tell history from live IVR answers.
IMPORT_SURVEY = "import"
#: Stored value ranges (yesno is stored 1 = yes, 0 = no; comment has no value).
VALUE_RANGES: dict[str, tuple[int, int]] = {"csat": (1, 5), "ces": (1, 7), "nps": (0, 10), "yesno": (0, 1)}
YESNO_WORDS = {"1": 1, "0": 0, "yes": 1, "no": 0, "y": 1, "n": 0}
QUESTION_TYPES: tuple[str, ...] = get_args(QuestionType)

#: How many problems an error lists: enough to fix a systematic mistake at once, not a wall of text.
MAX_PROBLEMS = 20
#: Rows per INSERT round trip; also how often ``progress`` is called.
BATCH = 1000

_INTEGER = re.compile(r"[+-]?[0-9]+")
_KEY = re.compile(r"[A-Za-z0-9_-]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class CsvImportError(ValueError):
    """A file that cannot be imported; ``problems`` holds (line, what is wrong), at most ``MAX_PROBLEMS``."""

    def __init__(self, path: str, problems: list[tuple[int, str]], total: int | None = None) -> None:
        self.path = path
        self.problems = problems
        self.total = total if total is not None else len(problems)
        lines = [f"{path} line {line}: {problem}" for line, problem in problems]
        if self.total > len(problems):
            lines.append(f"{path}: … and {self.total - len(problems)} more problems")
        super().__init__("\n".join(lines))

    @property
    def line(self) -> int:
        return self.problems[0][0]


class _Bad(Exception):
    """One cell's problem; the reader adds the line number."""


class _Problems:
    def __init__(self, path: str) -> None:
        self.path = path
        self.listed: list[tuple[int, str]] = []
        self.total = 0

    def add(self, line: int, problem: str) -> None:
        self.total += 1
        if len(self.listed) < MAX_PROBLEMS:
            self.listed.append((line, problem))

    def fail(self, line: int, problem: str) -> CsvImportError:
        self.add(line, problem)
        return CsvImportError(self.path, self.listed, self.total)

    def raise_if_any(self) -> None:
        if self.total:
            raise CsvImportError(self.path, self.listed, self.total)


def _names(columns: Iterable[str]) -> str:
    return ", ".join(repr(c) for c in columns)


def _read_rows(
    path: StrPath, required: tuple[str, ...], optional: tuple[str, ...], problems: _Problems
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (first line of the record, stripped cells by lower-case column name) for each data row.

    Header problems stop the import at once (no row can be read right); a row with the wrong number of
    cells is recorded and skipped so the remaining rows are still checked.
    """
    with open(path, encoding="utf-8-sig", newline="") as f:
        line = 1
        try:
            first = f.readline()
            if not first.strip():
                raise problems.fail(
                    1, f"the file is empty; the first line must name the columns: {_names(required)}"
                )
            delimiter = max((",", ";", "\t"), key=first.count)
            reader = csv.reader(itertools.chain([first], f), delimiter=delimiter, strict=True)
            header = [c.strip().lower() for c in next(reader)]
            _check_header(header, required, optional, problems)
            for cells in reader:
                line, start = reader.line_num, line + 1
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) > len(header) and not any(c.strip() for c in cells[len(header) :]):
                    cells = cells[: len(header)]  # trailing empty cells, as spreadsheets sometimes write
                if len(cells) != len(header):
                    problems.add(start, f"has {len(cells)} fields but the header has {len(header)}")
                    continue
                yield start, {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
        except UnicodeDecodeError:
            raise problems.fail(line + 1, "is not UTF-8 text (in Excel: save as 'CSV UTF-8')") from None
        except csv.Error as exc:
            raise problems.fail(line + 1, f"is not valid CSV ({exc})") from None


def _check_header(
    header: list[str], required: tuple[str, ...], optional: tuple[str, ...], problems: _Problems
) -> None:
    allowed = required + optional
    duplicated = sorted({c for c in header if header.count(c) > 1})
    missing = [c for c in required if c not in header]
    extra = [c for c in header if c not in allowed]
    if duplicated:
        problems.add(1, f"column(s) {_names(duplicated)} appear more than once")
    if missing:
        problems.add(1, f"missing column(s) {_names(missing)} (required: {_names(required)})")
    if extra:
        problems.add(
            1,
            f"unknown column(s) {_names(extra)} (allowed: {_names(required)}; optional: {_names(optional)})",
        )
    problems.raise_if_any()


def _optional(row: dict[str, str], column: str, max_length: int) -> str | None:
    """The cell, or None when it is empty or its (optional) column is absent."""
    value = row.get(column, "")
    if len(value) > max_length:
        raise _Bad(f"{column} {value[:40]!r}… is longer than {max_length} characters")
    return value or None


def _required(row: dict[str, str], column: str, max_length: int) -> str:
    value = _optional(row, column, max_length)
    if value is None:
        raise _Bad(f"{column} is empty")
    return value


# -- answers -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswersImportResult:
    """``skipped`` rows were already stored (an earlier import) or repeated identically within the file.

    ``days`` are the local days (``settings.tz``) that received new answers: the rollups to recompute.
    """

    rows: int
    inserted: int
    skipped: int
    days: set[date]


@dataclass(slots=True)
class _ParsedAnswer:
    line: int
    call_id: str
    question: str
    question_type: str
    answered_at: datetime
    agent: str
    queue: str
    value: int | None


def derived_call_id(answered_at: datetime, agent: str, queue: str) -> str:
    """A stable id for a call the CSV does not identify: the same time, agent and queue is the same call.

    ``answered_at`` is naive UTC, so a row written in local time and one written with an offset for the
    same instant land on the same call, and a re-import finds the answers it stored before.
    """
    digest = hashlib.sha256(f"{answered_at.isoformat()}|{agent}|{queue}".encode()).hexdigest()
    return f"import-{digest[:20]}"


def parse_timestamp(raw: str, tz: ZoneInfo) -> datetime:
    """ISO 8601 to naive UTC; without an offset the time is local in ``tz``.

    A local time inside the spring-forward gap never happened, so it is refused rather than guessed. A
    local time in the repeated autumn hour is taken as its first occurrence (summer time); an offset in
    the file is the way to say otherwise.
    """
    if not raw:
        raise _Bad("timestamp is empty")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise _Bad(
            f"timestamp {raw!r} is not ISO 8601 (e.g. '2025-03-10 14:05:00' or '2025-03-10T14:05:00+01:00')"
        ) from None
    try:
        date.fromisoformat(raw)
    except ValueError:
        pass
    else:
        raise _Bad(f"timestamp {raw!r} has no time of day")
    try:
        if parsed.tzinfo is None:
            local = parsed.replace(tzinfo=tz)
            if local.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != parsed:
                raise _Bad(
                    f"timestamp {raw!r} does not exist in {tz.key} (the clocks went forward then); "
                    "add the UTC offset"
                )
            parsed = local
        return parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise _Bad(f"timestamp {raw!r} is out of range") from None


def parse_value(raw: str, question_type: str, question: str) -> int | None:
    if question_type == "comment":
        if raw:
            raise _Bad(f"value must be empty for comment question {question!r} (got {raw!r})")
        return None
    if not raw:
        raise _Bad(f"value is empty for {question_type} question {question!r}")
    if question_type == "yesno":
        if raw.lower() not in YESNO_WORDS:
            raise _Bad(f"value {raw!r} is not 1/0 or yes/no for yesno question {question!r}")
        return YESNO_WORDS[raw.lower()]
    if not _INTEGER.fullmatch(raw):
        raise _Bad(f"value {raw!r} is not a whole number for {question_type} question {question!r}")
    value = int(raw)
    low, high = VALUE_RANGES[question_type]
    if not low <= value <= high:
        raise _Bad(f"value {raw!r} is out of range {low}–{high} for {question_type} question {question!r}")
    return value


def configured_question_types(settings: Settings) -> dict[str, str]:
    """Question key → type; a key in several surveys takes the type of the first survey defining it."""
    types: dict[str, str] = {}
    for survey in settings.surveys.values():
        for question in survey.questions:
            types.setdefault(question.key, question.type)
    return types


class _AnswerParser:
    """Turns rows into answers, remembering what the file said before (types, repeated answers)."""

    def __init__(self, settings: Settings) -> None:
        self.tz = settings.tz
        self.configured = configured_question_types(settings)
        self.given_types: dict[str, tuple[str, int]] = {}  # unconfigured key → (type, first line)
        self._last_stamp: tuple[str, datetime] | None = None

    def question_type(self, line: int, question: str, given: str) -> str:
        given = given.lower()
        if given and given not in QUESTION_TYPES:
            raise _Bad(f"question_type {given!r} is not one of {', '.join(QUESTION_TYPES)}")
        configured = self.configured.get(question)
        if configured is not None:
            if given and given != configured:
                raise _Bad(
                    f"question {question!r} is a {configured} question in the configured surveys, "
                    f"but question_type says {given!r}"
                )
            return configured
        if not given:
            known = ", ".join(sorted(self.configured)) or "none"
            raise _Bad(
                f"unknown question {question!r}: no configured survey asks it (known: {known}); "
                "give its type in a question_type column"
            )
        first = self.given_types.setdefault(question, (given, line))
        if first[0] != given:
            raise _Bad(
                f"question {question!r} has question_type {given!r}, but {first[0]!r} on line {first[1]}"
            )
        return given

    def timestamp(self, raw: str) -> datetime:
        # Rows of one call are usually adjacent and share a timestamp: parse (and keep) it once.
        if self._last_stamp is None or self._last_stamp[0] != raw:
            self._last_stamp = (raw, parse_timestamp(raw, self.tz))
        return self._last_stamp[1]

    def parse(self, line: int, row: dict[str, str]) -> _ParsedAnswer:
        answered_at = self.timestamp(row["timestamp"])
        agent = _required(row, "agent", 128)
        queue = _required(row, "queue", 128)
        question = _required(row, "question", 64)
        if not _KEY.fullmatch(question):
            raise _Bad(f"question {question!r} must be letters, digits, '-' or '_' (a question key)")
        question_type = self.question_type(line, question, row.get("question_type", ""))
        value = parse_value(row["value"], question_type, question)
        call_id = _optional(row, "call_id", 64) or derived_call_id(answered_at, agent, queue)
        # Interned: a million rows repeat a few hundred agents and queues, and each call id 2–5 times.
        return _ParsedAnswer(
            line=line,
            call_id=sys.intern(call_id),
            question=sys.intern(question),
            question_type=question_type,
            answered_at=answered_at,
            agent=sys.intern(agent),
            queue=sys.intern(queue),
            value=value,
        )


def _same_answer(a: _ParsedAnswer, b: _ParsedAnswer) -> bool:
    return (a.answered_at, a.agent, a.queue, a.value) == (b.answered_at, b.agent, b.queue, b.value)


def _read_answers(path: StrPath, settings: Settings) -> tuple[int, dict[tuple[str, str], _ParsedAnswer]]:
    """Every row checked; returns the row count and the distinct answers in file order."""
    problems = _Problems(fspath(path))
    parser = _AnswerParser(settings)
    answers: dict[tuple[str, str], _ParsedAnswer] = {}
    rows = 0
    for line, row in _read_rows(path, ANSWER_COLUMNS, ANSWER_OPTIONAL_COLUMNS, problems):
        rows += 1
        try:
            answer = parser.parse(line, row)
        except _Bad as exc:
            problems.add(line, str(exc))
            continue
        first = answers.setdefault((answer.call_id, answer.question), answer)
        if first is not answer and not _same_answer(first, answer):
            detail = (
                f"with value {first.value}, here {answer.value}"
                if first.value != answer.value
                else "with a different timestamp, agent or queue"
            )
            where = f"call {answer.call_id!r} already has question {answer.question!r} on line {first.line}"
            problems.add(line, f"{where} {detail}")
    problems.raise_if_any()
    return rows, answers


def _answer_rows(answers: Iterable[_ParsedAnswer]) -> Iterator[dict[str, Any]]:
    positions: dict[str, int] = {}
    for a in answers:
        positions[a.call_id] = position = positions.get(a.call_id, 0) + 1
        yield {
            "call_uniqueid": a.call_id,
            "linkedid": a.call_id,
            "queue": a.queue,
            "agent": a.agent,
            "agent_interface": None,
            "survey": IMPORT_SURVEY,
            "question": a.question,
            "question_type": a.question_type,
            "position": position,
            "value": a.value,
            "recording": None,
            "tries": 1,
            "answered_at": a.answered_at,
        }


def import_answers(
    engine: Engine, path: StrPath, settings: Settings, progress: Progress | None = None
) -> AnswersImportResult:
    """Load historical answers from a CSV (format in docs/examples/answers.csv and the README).

    Columns: ``timestamp``, ``agent``, ``queue``, ``question``, ``value``; optional ``question_type``
    and ``call_id``. Answers already stored are left as they are (a corrected value is not applied), so
    the same file can be imported twice. Rows without a ``call_id`` are grouped into calls by
    :func:`derived_call_id`. No ``calls`` rows are created: an import has answers, not the call's funnel.
    ``progress(done, total)`` reports the answers written so far out of the distinct answers in the file.
    """
    rows, answers = _read_answers(path, settings)
    table = Answer.__table__
    stmt = (
        _insert(engine, table)
        .on_conflict_do_nothing(index_elements=["call_uniqueid", "question"])
        .returning(table.c.answered_at)  # type: ignore[attr-defined]
    )
    total, done, inserted = len(answers), 0, 0
    stamps: set[datetime] = set()
    if progress:
        progress(0, total)
    with engine.begin() as conn:
        for batch in _batches(_answer_rows(answers.values())):
            stored = conn.execute(stmt, batch).scalars().all()
            inserted += len(stored)
            stamps.update(stored)
            done += len(batch)
            if progress:
                progress(done, total)
    return AnswersImportResult(
        rows=rows,
        inserted=inserted,
        skipped=rows - inserted,
        days={local_date(s, settings.tz) for s in stamps},
    )


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    while batch := list(itertools.islice(rows, BATCH)):
        yield batch


# -- agents and teams --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentsImportResult:
    """``rows`` counts data rows; created + updated + unchanged counts distinct agents."""

    rows: int
    created: int
    updated: int
    unchanged: int


@dataclass(frozen=True)
class _ParsedAgent:
    line: int
    agent: str
    team: str
    display_name: str | None
    email: str | None


def _parse_agent(line: int, row: dict[str, str]) -> _ParsedAgent:
    agent, team = _required(row, "agent", 128), _required(row, "team", 128)
    email = _optional(row, "email", 256)
    if email is not None and not _EMAIL.fullmatch(email):
        raise _Bad(f"email {email!r} is not an e-mail address")
    return _ParsedAgent(line, agent, team, _optional(row, "display_name", 256), email)


def _read_agents(path: StrPath) -> tuple[int, dict[str, _ParsedAgent]]:
    problems = _Problems(fspath(path))
    agents: dict[str, _ParsedAgent] = {}
    rows = 0
    for line, row in _read_rows(path, AGENT_COLUMNS, AGENT_OPTIONAL_COLUMNS, problems):
        rows += 1
        try:
            parsed = _parse_agent(line, row)
        except _Bad as exc:
            problems.add(line, str(exc))
            continue
        first = agents.setdefault(parsed.agent, parsed)
        if first is not parsed and (first.team, first.display_name, first.email) != (
            parsed.team,
            parsed.display_name,
            parsed.email,
        ):
            what = f"team {first.team!r}" if first.team != parsed.team else "a different name or email"
            problems.add(line, f"agent {parsed.agent!r} is already on line {first.line} with {what}")
    problems.raise_if_any()
    return rows, agents


def import_agents(engine: Engine, path: StrPath) -> AgentsImportResult:
    """Create or update agents from a CSV: ``agent``, ``team``; optional ``display_name``, ``email``.

    The file is the current truth for teams. An empty ``display_name`` or ``email`` cell (or a missing
    column) keeps what is stored, as elsewhere in csat: a blank never erases what is known.
    """
    rows, parsed = _read_agents(path)
    table = Agent.__table__
    created, updated, unchanged = 0, 0, 0
    changes: list[dict[str, Any]] = []
    now = utcnow()
    with engine.begin() as conn:
        stored = {
            r.agent: r
            for r in conn.execute(select(table.c.agent, table.c.team, table.c.display_name, table.c.email))  # type: ignore[attr-defined]
        }
        for new in parsed.values():
            old = stored.get(new.agent)
            row = {
                "agent": new.agent,
                "team": new.team,
                "display_name": new.display_name or (old.display_name if old else None),
                "email": new.email or (old.email if old else None),
                "updated_at": now,
            }
            if old is None:
                created += 1
            elif (old.team, old.display_name, old.email) == (row["team"], row["display_name"], row["email"]):
                unchanged += 1
                continue
            else:
                updated += 1
            changes.append(row)
        if changes:
            stmt = _insert(engine, table)
            stmt = stmt.on_conflict_do_update(
                index_elements=["agent"],
                set_={
                    "team": stmt.excluded.team,
                    "display_name": func.coalesce(stmt.excluded.display_name, table.c.display_name),  # type: ignore[attr-defined]
                    "email": func.coalesce(stmt.excluded.email, table.c.email),  # type: ignore[attr-defined]
                    "updated_at": stmt.excluded.updated_at,
                },
            )
            conn.execute(stmt, changes)
    return AgentsImportResult(rows=rows, created=created, updated=updated, unchanged=unchanged)


__all__ = [
    "AgentsImportResult",
    "AnswersImportResult",
    "CsvImportError",
    "import_agents",
    "import_answers",
]
