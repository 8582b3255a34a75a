"""Drive SIPp phones against a (private) Asterisk: agent phones and scripted customers.

``AgentPhones`` starts one SIPp UAS per agent (``agentK`` on 127.0.0.1:base_port+K). ``run_calls``
places one customer call per :class:`CallCase` and reports, per case, which agent the survey
prompts named and how many prompts the caller saw. Everything (XML, CSV, pcaps, SIPp logs) is
written under ``work_dir``; every socket is on 127.0.0.1.

Ports derived from the given base ports (keep ranges apart when running several rigs):

* agent K: SIP base_port+K, media base_port+2000+10K (SIPp also takes media+2 for video),
  control base_port+3000+K;
* customer UAC: SIP local_port, media local_port+1000, control local_port+3000.

Survey action tokens, one per prompt: a key string (``0``-``9``, ``S`` = ``*``, ``P`` = ``#``,
e.g. ``4``, ``10``, ``10P``), ``-`` (press nothing) or ``H`` (hang up about 1 s into the prompt).
After the list runs out the caller presses nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from ivr.simulate import pcaps, scenarios

SIPP_BIN = "sipp"
RECV_TIMEOUT_MS = 90_000
MIN_PROMPTS = 8
_CASE_ID = re.compile(r"^[a-z0-9-]+$")
_EXTEN = re.compile(r"^[0-9A-Za-z*#+]+$")
_NUMBER = re.compile(r"^[0-9A-Za-z+*#._-]+$")
_AGENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_ACTION = re.compile(r"^(?:[0-9SP]+|-|H)$")
_KEYMAP = {"S": "*", "P": "#"}
_ERROR_ENTRY = re.compile(r"\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ")
_CALL_ID_IN_ERROR = re.compile(r"call[-_ ]id[:= ]*'?([^'\s,]+)", re.IGNORECASE)


class SippError(RuntimeError):
    """SIPp could not be started or crashed before placing calls."""


@dataclass(frozen=True)
class CallCase:
    """One simulated customer call.

    ``case_id`` becomes CALLERID(name) (From display name); ``caller_number`` becomes
    CALLERID(num) through a P-Asserted-Identity header. ``hangup_after_ms`` > 0 makes the caller
    hang up that long after the 200 OK (prompts arriving before that are answered and counted but
    not acted on). ``actions`` are the survey actions for any agent; ``actions_by_agent`` overrides
    them for the named agents (the agent named in the SURVEY_PROMPT message).
    """

    case_id: str
    exten: str
    caller_number: str = "5550100"
    hangup_after_ms: int = 0
    actions: tuple[str, ...] = ()
    actions_by_agent: Mapping[str, tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        if not _CASE_ID.match(self.case_id):
            raise ValueError(f"case_id {self.case_id!r} must match [a-z0-9-]+")
        if not _EXTEN.match(self.exten):
            raise ValueError(f"{self.case_id}: invalid exten {self.exten!r}")
        if not _NUMBER.match(self.caller_number):
            raise ValueError(f"{self.case_id}: invalid caller_number {self.caller_number!r}")
        if self.hangup_after_ms < 0:
            raise ValueError(f"{self.case_id}: hangup_after_ms must be >= 0")
        for agent, acts in self.action_lists().items():
            if agent and not _AGENT.match(agent):
                raise ValueError(f"{self.case_id}: invalid agent name {agent!r}")
            bad = [a for a in acts if not _ACTION.match(a)]
            if bad:
                raise ValueError(f"{self.case_id}: invalid action tokens {bad} (use digits, S, P, -, H)")

    def action_lists(self) -> dict[str, tuple[str, ...]]:
        """'' -> default actions, then one entry per agent override."""
        lists = {"": tuple(self.actions)}
        for agent, acts in (self.actions_by_agent or {}).items():
            lists[agent] = tuple(acts)
        return lists

    def actions_for(self, agent: str) -> tuple[str, ...]:
        """The actions this caller performs when the survey names ``agent``."""
        overrides = self.actions_by_agent or {}
        return tuple(overrides.get(agent, self.actions))


@dataclass
class CallResult:
    """What happened to one case: ``ok`` = the caller's scenario completed without SIPp error."""

    case_id: str
    ok: bool
    agent: str | None
    prompts: int
    error: str | None
    end_reason: str | None = None
    call_id: str | None = None
    answered: bool = False
    prompt_numbers: list[int] = field(default_factory=list)


def sipp_available() -> bool:
    """True if the sipp binary is on PATH (tests skip otherwise)."""
    return shutil.which(SIPP_BIN) is not None


# --------------------------------------------------------------------------- processes
def port_in_use(port: int, kind: int = socket.SOCK_DGRAM) -> bool:
    """True if something already holds 127.0.0.1:port (UDP by default)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:  # TIME_WAIT leftovers do not stop Asterisk or csat (SO_REUSEADDR)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _terminate_group(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM then SIGKILL the process group of ``proc`` (only while the leader is unreaped)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _common_args(sip_port: int, media_port: int, control_port: int) -> list[str]:
    """Loopback-only sockets: without -bind_local/-ci SIPp listens on 0.0.0.0."""
    return [
        "-i", "127.0.0.1", "-bind_local", "-p", str(sip_port),
        "-mi", "127.0.0.1", "-mp", str(media_port),
        "-ci", "127.0.0.1", "-cp", str(control_port),
        "-t", "u1", "-nostdin", "-aa", "-f", "60",
    ]  # fmt: skip


def _per_agent(value: int | Mapping[str, int], agent: str, default: int) -> int:
    return value if isinstance(value, int) else int(value.get(agent, default))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class AgentPhones:
    """N SIPp agent phones (UAS). Each rings ``ring_ms``, answers, talks ``talk_ms``, hangs up.

    ``talk_ms``/``ring_ms`` are one value for all agents or a per-agent-name map (default 2000/300).
    """

    def __init__(
        self,
        work_dir: Path,
        count: int = 3,
        base_port: int = 5070,
        talk_ms: int | Mapping[str, int] = 2000,
        trace_messages: bool = False,
        ring_ms: int | Mapping[str, int] = 300,
    ) -> None:
        self.work_dir = Path(work_dir).resolve()
        self.count = count
        self.base_port = base_port
        self.talk_ms = talk_ms
        self.ring_ms = ring_ms
        self.trace_messages = trace_messages
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[IO[bytes]] = []

    @property
    def names(self) -> list[str]:
        return [f"agent{k}" for k in range(1, self.count + 1)]

    def talk_for(self, agent: str) -> int:
        """Talk time of ``agent`` (ms from ACK to the agent's BYE)."""
        return _per_agent(self.talk_ms, agent, 2000)

    def ring_for(self, agent: str) -> int:
        """How long ``agent`` rings before answering (ms)."""
        return _per_agent(self.ring_ms, agent, 300)

    def ports(self, k: int) -> tuple[int, int, int]:
        """(sip, media, control) ports of agent K."""
        return self.base_port + k, self.base_port + 2000 + 10 * k, self.base_port + 3000 + k

    def start(self, timeout: float = 10.0) -> None:
        """Start every agent and verify it is listening; on any failure stop them all."""
        if not sipp_available():
            raise SippError("sipp not found; run scripts/install-system-deps.sh")
        if self._procs:
            raise SippError("agent phones already started")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            for k, name in enumerate(self.names, start=1):
                self._start_one(k, name)
            self._wait_listening(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def _start_one(self, k: int, name: str) -> None:
        sip, media, control = self.ports(k)
        for port in (sip, media, media + 2, control):
            if port_in_use(port):
                raise SippError(f"{name}: UDP 127.0.0.1:{port} is already in use")
        xml = self.work_dir / f"{name}.xml"
        xml.write_text(scenarios.agent_uas_xml(self.talk_for(name), ring_ms=self.ring_for(name)))
        args = [SIPP_BIN, "-sf", str(xml), "-s", name, *_common_args(sip, media, control)]
        args += ["-trace_err", "-error_file", str(self.work_dir / f"{name}_errors.log")]
        if self.trace_messages:
            args += ["-trace_msg", "-message_file", str(self.work_dir / f"{name}_messages.log")]
        err = open(self.work_dir / f"{name}_stderr.log", "ab")  # noqa: SIM115 - closed in stop()
        self._files.append(err)
        self._procs[name] = subprocess.Popen(
            args,
            cwd=self.work_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the periodic screen dump is useless here
            stderr=err,
            start_new_session=True,
        )

    def _wait_listening(self, deadline: float) -> None:
        pending = dict(self._procs)
        while pending:
            for name, proc in list(pending.items()):
                if proc.poll() is not None:
                    stderr = _tail(self.work_dir / f"{name}_stderr.log")
                    raise SippError(f"{name} exited with {proc.returncode}:\n{stderr}")
                k = self.names.index(name) + 1
                if port_in_use(self.ports(k)[0]):
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise SippError(f"agent phones not listening: {sorted(pending)}")
            time.sleep(0.05)

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self._procs.items()}

    def stop(self) -> None:
        """Kill every agent process group. Idempotent."""
        for proc in self._procs.values():
            _terminate_group(proc)
        self._procs.clear()
        for f in self._files:
            f.close()
        self._files.clear()

    def __enter__(self) -> AgentPhones:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- plan
def _keys(token: str) -> str:
    return "".join(_KEYMAP.get(c, c) for c in token)


class _PcapBook:
    """Assigns one pcap (and code ``k<N>``) per distinct (keys, first press number)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.codes: dict[tuple[str, int], str] = {}
        self.paths: dict[str, Path] = {}

    def code(self, keys: str, first_press: int) -> str:
        spec = (keys, first_press)
        if spec not in self.codes:
            code = f"k{len(self.codes) + 1}"
            name = "".join(pcaps.KEY_NAMES[k] for k in keys)
            path = self.out_dir / f"press_{code}_{name}_from{first_press}.pcap"
            pcaps.write_press_sequence(list(keys), first_press, path)
            self.codes[spec] = code
            self.paths[code] = path
        return self.codes[spec]


def _slot_codes(actions: Sequence[str], prompts: int, book: _PcapBook) -> list[str]:
    """Action code per prompt; key presses number on through the whole call."""
    codes: list[str] = []
    press = 1
    for token in list(actions)[:prompts]:
        if token in (scenarios.NO_ACTION, scenarios.HANGUP_ACTION):
            codes.append(token)
            continue
        keys = _keys(token)
        codes.append(book.code(keys, press))
        press += len(keys)
    return codes + [scenarios.NO_ACTION] * (prompts - len(codes))


def _build_inputs(cases: Sequence[CallCase], work_dir: Path) -> tuple[scenarios.UacPlan, list[str]]:
    """Write the pcaps and return the scenario plan plus the CSV lines."""
    groups = tuple(sorted({a for c in cases for a in (c.actions_by_agent or {})}))
    prompts = max([MIN_PROMPTS] + [len(acts) for c in cases for acts in c.action_lists().values()])
    pcap_dir = work_dir / "pcaps"
    pcap_dir.mkdir(parents=True, exist_ok=True)
    book = _PcapBook(pcap_dir)
    rows: list[tuple[CallCase, list[list[str]]]] = []
    for case in cases:
        slots = [_slot_codes(case.actions, prompts, book)]
        slots += [_slot_codes(case.actions_for(agent), prompts, book) for agent in groups]
        rows.append((case, slots))
    hangups = tuple(sorted({c.hangup_after_ms for c in cases if c.hangup_after_ms > 0}))
    plan = scenarios.UacPlan(groups=groups, prompts=prompts, pcaps=dict(book.paths), hangup_values=hangups)
    lines = [
        scenarios.csv_line(plan, c.case_id, c.exten, c.caller_number, c.hangup_after_ms, slots)
        for c, slots in rows
    ]
    return plan, lines


def _validate_cases(cases: Sequence[CallCase]) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            raise ValueError(f"duplicate case_id {case.case_id!r}")
        seen.add(case.case_id)


# --------------------------------------------------------------------------- run
def run_calls(
    cases: Sequence[CallCase],
    *,
    work_dir: Path,
    sip_port: int = 5060,
    concurrency: int = 10,
    rate_per_s: float = 5.0,
    timeout_s: float = 240.0,
    local_port: int = 5090,
) -> list[CallResult]:
    """Place every case as one customer call (in order, ``concurrency`` at a time) and wait.

    Returns one :class:`CallResult` per case, in case order. SIPp gets ``timeout_s`` in total and
    is killed shortly after if it does not exit by itself.
    """
    if not cases:
        return []
    if not sipp_available():
        raise SippError("sipp not found; run scripts/install-system-deps.sh")
    _validate_cases(cases)
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    plan, lines = _build_inputs(cases, work_dir)
    xml = work_dir / "customer_uac.xml"
    xml.write_text(scenarios.customer_uac_xml(plan))
    csv = work_dir / "cases.csv"
    csv.write_text("SEQUENTIAL\n" + "\n".join(lines) + "\n")
    files = _UacFiles(work_dir)
    for path in (files.logs, files.errors, files.messages):
        path.unlink(missing_ok=True)
    args = _uac_args(xml, csv, len(cases), sip_port, local_port, concurrency, rate_per_s, timeout_s, files)
    returncode = _run_uac(args, work_dir, timeout_s, files)
    return _collect_results(cases, files, returncode)


@dataclass(frozen=True)
class _UacFiles:
    work_dir: Path

    @property
    def logs(self) -> Path:
        return self.work_dir / "uac_logs.log"

    @property
    def errors(self) -> Path:
        return self.work_dir / "uac_errors.log"

    @property
    def messages(self) -> Path:
        return self.work_dir / "uac_messages.log"

    @property
    def stdout(self) -> Path:
        return self.work_dir / "uac_stdout.log"

    @property
    def stderr(self) -> Path:
        return self.work_dir / "uac_stderr.log"


def _uac_args(
    xml: Path,
    csv: Path,
    calls: int,
    sip_port: int,
    local_port: int,
    concurrency: int,
    rate_per_s: float,
    timeout_s: float,
    files: _UacFiles,
) -> list[str]:
    period_ms = max(1, round(1000.0 / max(rate_per_s, 0.001)))
    return [
        SIPP_BIN, f"127.0.0.1:{sip_port}",
        "-sf", str(xml), "-inf", str(csv),
        "-m", str(calls), "-l", str(max(1, concurrency)), "-r", "1", "-rp", str(period_ms),
        "-timeout", str(max(1, int(timeout_s))), "-timeout_error",
        "-recv_timeout", str(RECV_TIMEOUT_MS),
        *_common_args(local_port, local_port + 1000, local_port + 3000),
        "-trace_logs", "-log_file", str(files.logs),
        "-trace_err", "-error_file", str(files.errors),
        "-trace_msg", "-message_file", str(files.messages),
    ]  # fmt: skip


def _run_uac(args: list[str], work_dir: Path, timeout_s: float, files: _UacFiles) -> int | None:
    """Run SIPp to completion; None if it had to be killed."""
    with open(files.stdout, "wb") as out, open(files.stderr, "wb") as err:
        proc = subprocess.Popen(
            args, cwd=work_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        try:
            return proc.wait(timeout=timeout_s + 20)
        except subprocess.TimeoutExpired:
            return None
        finally:
            _terminate_group(proc)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def _collect_results(cases: Sequence[CallCase], files: _UacFiles, returncode: int | None) -> list[CallResult]:
    results = {c.case_id: CallResult(c.case_id, False, None, 0, None) for c in cases}
    for line in _read_lines(files.logs):
        _apply_log_line(results, line.strip())
    if not any(r.call_id for r in results.values()):  # e.g. a scenario SIPp refused to load
        raise SippError(
            f"sipp placed no call (exit {returncode}):\n{_tail(files.stderr)}\n{_tail(files.errors)}"
        )
    errors = _errors_by_call_id(_read_lines(files.errors))
    for res in results.values():
        if res.ok:
            continue
        detail = errors.get(res.call_id or "", "")
        if returncode is None:
            reason = "sipp killed after timeout"
        elif res.call_id is None:
            reason = "call never started (sipp timeout or abort)"
        elif not res.answered:
            reason = "call not answered"
        else:
            reason = "scenario did not complete"
        res.error = f"{reason}; {detail}" if detail else reason
    return [results[c.case_id] for c in cases]


def _apply_log_line(results: dict[str, CallResult], line: str) -> None:
    """Fold one ``CSAT|...`` log line (see scenarios module docstring) into the results."""
    parts = line.split("|")
    if len(parts) < 3 or parts[0] != "CSAT" or parts[2] not in results:
        return
    res = results[parts[2]]
    kind = parts[1]
    if kind == "start" and len(parts) >= 4:
        res.call_id = parts[3]
    elif kind == "answered":
        res.answered = True
    elif kind == "prompt" and len(parts) >= 6:
        res.prompts += 1
        res.agent = parts[4] or res.agent
        with contextlib.suppress(ValueError):
            res.prompt_numbers.append(int(parts[3]))
    elif kind == "end" and len(parts) >= 4:
        res.ok = True
        res.end_reason = parts[3]


def _errors_by_call_id(lines: list[str]) -> dict[str, str]:
    """SIPp error-log entries keyed by the Call-ID they mention.

    SIPp writes entries without a newline between them ("...label 372026-11-23<TAB>..."), so split
    on the timestamp prefix. Receive timeouts that jump to an ``ontimeout`` label are part of the
    scenario's design, not errors.
    """
    found: dict[str, str] = {}
    entries = _ERROR_ENTRY.split("\n".join(lines))
    for entry in entries:
        entry = entry.strip()
        if not entry or "jumping to label" in entry:
            continue
        match = _CALL_ID_IN_ERROR.search(entry)
        if match:
            found.setdefault(match.group(1), " | ".join(entry.splitlines()[:2])[:300])
    return found
