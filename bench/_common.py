"""Shared helpers for the call benchmarks (``dead_air.py``, ``load.py``): the rig's ports, work dirs,
the csat survey configuration, AMI event helpers, percentiles and ``/proc`` sampling.

Not a benchmark itself; the scripts import it as ``_common`` (``bench/`` is on ``sys.path`` when a
script in it runs) and it puts the repository root on ``sys.path`` for ``ivr``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ivr.asterisk_runner import (  # noqa: E402
    DEMO_TEMPLATE_DIR,
    AmiUser,
    Route,  # noqa: E402
    asterisk_available,
)
from ivr.caller_hash import caller_hash  # noqa: E402
from ivr.simulate.rig import RigConfig, RigPorts, json_env  # noqa: E402
from ivr.simulate.sipp_runner import port_in_use, sipp_available  # noqa: E402

HASH_SECRET = "bench-secret"

#: The benchmarks' own port range, away from the test rigs (TEST_PORTS and CSAT_TEST_PORT_OFFSET=100).
#: sip/ami/agi/rtp are the agreed 17060/17038/17573/23000-24999. The agent phones and the customer UAC
#: are NOT at the agreed 17100/17090: the test rigs' SIPp agents take media ports
#: 15070+2000+10K (+2) = 17080/17082/17090/17092/17100/17102 (and 17180..17202 with offset 100), so
#: agent2 at 17102 and a UAC at 17090 would collide with a test run in progress. Derived ports here:
#: agent K SIP 17600+K, media 19600+10K (+2), control 20600+K; UAC SIP 17050, media 18050, control 20050.
BENCH_PORTS = RigPorts(
    sip=17060,
    ami=17038,
    agi=17573,
    agent_base=17600,
    uac=17050,
    rtp_start=23000,
    rtp_end=24999,
    web=16580,
)

#: A lighter AMI reader than the rig's ``observer`` (read=all): no dialplan VarSet/Newexten flood,
#: no reporting-class TestEvent/RTCP events. Enough for AgentConnect, HangupRequest, AGIExec*.
LIGHT_OBSERVER = AmiUser("benchobs", "benchobs-secret", "call,agent,agi", "system")


# ------------------------------------------------------------------------------------------- setup
def preflight(agent_count: int, ports: RigPorts = BENCH_PORTS) -> None:
    """Refuse to start if a port this rig needs is taken (another rig, a leftover process)."""
    if not asterisk_available():
        raise SystemExit("asterisk is not installed (scripts/install-system-deps.sh)")
    if not sipp_available():
        raise SystemExit("sipp is not installed (scripts/install-system-deps.sh)")
    udp = [ports.sip, ports.uac, ports.uac + 1000, ports.uac + 3000]
    for k in range(1, agent_count + 1):
        sip, media, control = (
            ports.agent_base + k,
            ports.agent_base + 2000 + 10 * k,
            ports.agent_base + 3000 + k,
        )
        udp += [sip, media, media + 2, control]
    if len(set(udp)) != len(udp):
        raise SystemExit(f"internal port plan collides with itself: {sorted(udp)}")
    busy = [f"udp/{p}" for p in udp if port_in_use(p, socket.SOCK_DGRAM)]
    busy += [f"tcp/{p}" for p in (ports.ami, ports.agi) if port_in_use(p, socket.SOCK_STREAM)]
    if busy:
        raise SystemExit(f"ports already in use on 127.0.0.1: {', '.join(busy)}; is another bench running?")


def work_dir(given: str | None, prefix: str) -> Path:
    if given:
        path = Path(given).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix=f"csat-{prefix}-", dir="/tmp"))


def autofill_templates(work: Path) -> Path:
    """A copy of the demo Asterisk templates whose queues.conf [general] says ``autofill = yes``.

    Without it (the demo config; Asterisk 16's default is no) only the head caller of a queue rings an
    agent, and the others re-check their turn once a second: the queue connects ~1 caller per second
    however many agents are free, so 100 callers can never be in the survey at once.
    """
    target = work / "asterisk-templates"
    shutil.copytree(DEMO_TEMPLATE_DIR, target, dirs_exist_ok=True)
    queues = target / "queues.conf"
    text = queues.read_text()
    if "[general]\n" not in text:
        raise SystemExit(f"{DEMO_TEMPLATE_DIR}/queues.conf has no [general] section to add autofill to")
    queues.write_text(text.replace("[general]\n", "[general]\nautofill = yes\n", 1))
    return target


def question(key: str, type_: str, text: str, timeout_s: float) -> dict[str, Any]:
    return {"key": key, "type": type_, "text": text, "timeout_s": timeout_s, "tries": 3}


def bench_survey(timeout_s: float = 2.0) -> dict[str, Any]:
    """Three short questions (the tests' survey): csat 1-5, fcr yes/no, nps 0-10."""
    return {
        "intro_text": None,
        "questions": [
            question("csat", "csat", "Rate the agent from 1 to 5.", timeout_s),
            question("fcr", "yesno", "Solved? 1 yes, 2 no.", timeout_s),
            question("nps", "nps", "Recommend us? 0 to 10, then pound.", timeout_s),
        ],
        "thanks_text": "Thanks.",
        "goodbye_text": "Goodbye.",
    }


def csat_env(data_dir: Path, survey: dict[str, Any], queue: str = "support") -> dict[str, str]:
    return {
        "CSAT_DATA_DIR": str(data_dir),
        "CSAT_HASH_SECRET": HASH_SECRET,
        "CSAT_SURVEYS": json_env({"bench": survey}),
        "CSAT_DEFAULT_POLICY": json_env({"survey": "bench"}),
        "CSAT_QUEUES": json_env({queue: {"survey": "bench"}}),
        "CSAT_LOG_LEVEL": "INFO",
    }


def caller_hash_of(number: str) -> str:
    """How csat stores this caller number (the tests find rows the same way)."""
    hashed = caller_hash(HASH_SECRET, number)
    assert hashed is not None
    return hashed


def stored_values(keys: dict[str, int]) -> dict[str, int]:
    """What csat stores for the survey's key presses: yes/no is kept as 1 (key 1) / 0 (key 2)."""
    return {**keys, "fcr": 1 if keys["fcr"] == 1 else 0}


def nps_keys(value: int) -> str:
    """NPS is up to 2 digits: '10' ends by itself, one digit needs '#' (P)."""
    return "10" if value == 10 else f"{value}P"


# --------------------------------------------------------------------------------------------- AMI
def ts(event: dict[str, str]) -> float:
    """The server ``Timestamp`` header (epoch seconds with microseconds)."""
    return float(event["Timestamp"])


def is_prompt(event: dict[str, str]) -> bool:
    """An AGI command that plays a survey prompt."""
    cmd = event.get("Command", "").upper()
    return event.get("Event") == "AGIExecStart" and (
        cmd.startswith("GET DATA") or cmd.startswith("STREAM FILE")
    )


@dataclass
class CallerEvents:
    """The AMI events of one caller call, found by the caller channel's Uniqueid (= its Linkedid)."""

    uniqueid: str
    case_id: str
    newchannel: dict[str, str]
    agent_connect: dict[str, str] | None = None
    agent_complete: dict[str, str] | None = None
    agent_hangup_request: dict[str, str] | None = None
    agi_app_start: dict[str, str] | None = None
    first_agi: dict[str, str] | None = None
    first_prompt: dict[str, str] | None = None
    last_agi_end: dict[str, str] | None = None
    agi_starts: list[dict[str, str]] = field(default_factory=list)


def index_callers(events: Iterable[dict[str, str]], case_ids: set[str]) -> dict[str, CallerEvents]:
    """case_id -> that caller's events. The case id is the caller's CALLERID(name) (CallerIDName)."""
    events = sorted((e for e in events if "Timestamp" in e), key=ts)
    by_uid: dict[str, CallerEvents] = {}
    by_case: dict[str, CallerEvents] = {}
    for e in events:
        name = e.get("CallerIDName", "")
        if (
            e.get("Event") == "Newchannel"
            and name in case_ids
            and name not in by_case
            and e.get("Channel", "").startswith("PJSIP/customer")
        ):
            ce = CallerEvents(e["Uniqueid"], name, e)
            by_uid[ce.uniqueid] = ce
            by_case[name] = ce
    agent_leg: dict[str, CallerEvents] = {}  # agent leg uniqueid -> caller
    for e in events:
        name = e.get("Event")
        uid = e.get("Uniqueid", "")
        ce = by_uid.get(uid)
        if name == "AgentConnect" and ce is not None and ce.agent_connect is None:
            ce.agent_connect = e
            if e.get("DestUniqueid"):
                agent_leg[e["DestUniqueid"]] = ce
        elif name == "AgentComplete" and ce is not None and ce.agent_complete is None:
            ce.agent_complete = e
        elif name == "HangupRequest" and uid in agent_leg:
            owner = agent_leg[uid]
            if owner.agent_hangup_request is None:
                owner.agent_hangup_request = e
        elif (
            name == "Newexten"
            and ce is not None
            and e.get("Application") == "AGI"
            and ce.agi_app_start is None
        ):
            ce.agi_app_start = e
        elif name == "AGIExecStart" and ce is not None:
            ce.agi_starts.append(e)
            if ce.first_agi is None:
                ce.first_agi = e
            if ce.first_prompt is None and is_prompt(e):
                ce.first_prompt = e
        elif name == "AGIExecEnd" and ce is not None:
            ce.last_agi_end = e
    return by_case


def dump_events(events: Iterable[dict[str, str]], path: Path) -> Path:
    """Every AMI event kept, one JSON object a line, for a later look at one call."""
    with path.open("w") as out:
        for e in events:
            out.write(json.dumps(e) + "\n")
    return path


# ----------------------------------------------------------------------------------------- figures
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> str:
    if not values:
        return "n=0"
    return (
        f"median {statistics.median(values):7.1f}  p95 {percentile(values, 95):7.1f}  "
        f"max {max(values):7.1f}  min {min(values):7.1f}  (n={len(values)})"
    )


def peak_overlap(intervals: Iterable[tuple[float, float]]) -> tuple[int, float]:
    """Most intervals open at one instant, and how long (s) that peak held in total."""
    points: list[tuple[float, int]] = []
    for start, end in intervals:
        if end < start:
            continue
        points += [(start, 1), (end, -1)]
    points.sort(key=lambda p: (p[0], p[1]))  # an end before a start at the same instant
    best, current, held, since = 0, 0, 0.0, 0.0
    for t, delta in points:
        if current == best and best > 0:
            held += t - since
        current += delta
        if current > best:
            best, held = current, 0.0
        since = t
    return best, held


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB RAM, {platform.system()} {platform.release()}"


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# ------------------------------------------------------------------------------------------- /proc
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` (all its threads) from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on
    return int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK


def proc_status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def kib(value: str) -> int:
    """'123456 kB' -> 123456."""
    return int(value.split()[0]) if value else 0


def listen_overflows() -> dict[str, int]:
    """Machine-wide TCP accept-queue overflow counters (TcpExt ListenOverflows/ListenDrops)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            table = dict(zip(head.split()[1:], (int(v) for v in values.split()[1:]), strict=False))
            return {k: table.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    return {}


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


class ProcSampler:
    """Samples CPU time, RSS and thread count of some processes (and the machine) every ``interval`` s."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self.pids = pids
        self.interval = interval
        self.samples: list[tuple[float, dict[str, float], tuple[int, int]]] = []
        self.peak_rss_kib: dict[str, int] = dict.fromkeys(pids, 0)
        self.peak_threads: dict[str, int] = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)

    def _sample(self) -> None:
        cpu: dict[str, float] = {}
        for name, pid in self.pids.items():
            try:
                user, sys_ = cpu_seconds(pid)
                status = proc_status(pid)
            except (OSError, ValueError, IndexError):
                continue
            cpu[name] = user + sys_
            self.peak_rss_kib[name] = max(self.peak_rss_kib[name], kib(status.get("VmRSS", "")))
            self.peak_threads[name] = max(self.peak_threads[name], int(status.get("Threads", "0") or 0))
        self.samples.append((time.monotonic(), cpu, machine_cpu_ticks()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def peak_percent(self, name: str, window_s: float = 1.0) -> float:
        """Highest CPU % of one core of ``name`` over any ``window_s`` window of samples."""
        best = 0.0
        pts = [(t, cpu[name]) for t, cpu, _ in self.samples if name in cpu]
        j = 0
        for i in range(len(pts)):
            # the latest sample at least window_s before sample i
            while j + 1 < i and pts[i][0] - pts[j + 1][0] >= window_s:
                j += 1
            span = pts[i][0] - pts[j][0]
            if span >= window_s:
                best = max(best, 100.0 * (pts[i][1] - pts[j][1]) / span)
        return best

    def machine_busy_percent(self) -> float:
        """Whole-machine CPU busy % (all cores = 100 %) between the first and last sample."""
        if len(self.samples) < 2:
            return math.nan
        (b0, t0), (b1, t1) = self.samples[0][2], self.samples[-1][2]
        return 100.0 * (b1 - b0) / max(1, t1 - t0)


def run_main(main: Callable[[], int]) -> None:
    """The benches' entry point: Ctrl-C exits 130 once the rig's context manager has stopped it all."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the rig (Asterisk, agent phones, csat serve, SIPp) has been stopped",
            file=sys.stderr,
        )
        sys.exit(130)


def rig_config(
    work: Path, *, agents: int, talk_ms: int, survey: dict[str, Any], queue: str, exten: str, max_wait_s: int
) -> RigConfig:
    """One queue with ``agents`` members on the bench ports: what both call benchmarks run on."""
    return RigConfig(
        work_dir=work,
        ports=BENCH_PORTS,
        queues={queue: [f"agent{k}" for k in range(1, agents + 1)]},
        routes=[Route(exten, queue, max_wait_s)],
        agent_count=agents,
        talk_ms=talk_ms,
        csat_env=csat_env(work / "var", survey, queue),
    )
