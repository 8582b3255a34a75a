"""A complete local call centre for the demo, the tests and the benchmarks: a private Asterisk with
csat's rendered dialplan, SIPp agent phones, and ``csat serve`` as a real child process.

Everything binds to 127.0.0.1 and lives under one work directory; ``stop()`` (also on Ctrl-C, via
the context manager) ends every process it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.asterisk_runner import AmiUser, AsteriskConfig, PrivateAsterisk, Route
from ivr.simulate.sipp_runner import AgentPhones, CallCase, CallResult, run_calls

OBSERVER_USER = AmiUser("observer", "observer-secret", "all", "system")


@dataclass(frozen=True)
class RigPorts:
    sip: int = 5060
    ami: int = 5038
    agi: int = 4573
    agent_base: int = 5070
    uac: int = 5090
    rtp_start: int = 20000
    rtp_end: int = 20999
    web: int = 8080  # the dashboard csat serve runs


DEMO_PORTS = RigPorts()
#: The tests' ports; CSAT_TEST_PORT_OFFSET shifts them all (two rigs on one machine).
_OFFSET = int(os.environ.get("CSAT_TEST_PORT_OFFSET", "0"))
TEST_PORTS = RigPorts(
    sip=15060 + _OFFSET,
    ami=15038 + _OFFSET,
    agi=14573 + _OFFSET,
    agent_base=15070 + _OFFSET,
    uac=15090 + _OFFSET,
    rtp_start=21000 + _OFFSET,
    rtp_end=21999 + _OFFSET,
    web=16480 + _OFFSET,
)


@dataclass
class RigConfig:
    work_dir: Path
    ports: RigPorts = DEMO_PORTS
    queues: dict[str, list[str]] = field(
        default_factory=lambda: {"support": ["agent1", "agent2", "agent3"], "empty": []}
    )
    routes: list[Route] = field(default_factory=lambda: [Route("100", "support"), Route("300", "empty", 4)])
    agent_count: int = 3
    talk_ms: int | Mapping[str, int] = 2000
    #: CSAT_* environment for the csat child (JSON for nested settings); data_dir defaults to work_dir/var.
    csat_env: dict[str, str] = field(default_factory=dict)
    #: csat connects to AMI on this port instead of Asterisk's (a test proxy in between).
    csat_ami_port: int | None = None
    test_sync: bool = True


def csat_command() -> list[str]:
    return [sys.executable, "-m", "ivr"]


class CsatProcess:
    """``csat serve`` as a child process, so tests can kill it like an admin's systemd would."""

    def __init__(self, env: dict[str, str], log_path: Path, cwd: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*csat_command(), *args], env=self.env, cwd=self.cwd, capture_output=True, text=True, check=check
        )

    def start(self, timeout: float = 20.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [*csat_command(), "serve"],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"csat serve exited with {self.proc.returncode}; see {self.log_path}")
            if self.log_mentions("AMI connected"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"csat serve did not connect to AMI within {timeout}s; see {self.log_path}")

    def log_mentions(self, text: str) -> bool:
        """Whether csat logged ``text`` since the last ``mark_log`` (how a test waits for a reconnect)."""
        try:
            return text in self.log_path.read_text(errors="replace")[self._log_offset :]
        except FileNotFoundError:
            return False

    _log_offset = 0

    def mark_log(self) -> None:
        """Later ``log_mentions`` calls only look at what is logged from now on."""
        try:
            self._log_offset = len(self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            self._log_offset = 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class AmiObserver:
    """A plain-socket AMI reader that keeps every event: what a test or benchmark checks Asterisk by."""

    #: Events nobody asks about that would only bloat the list (the Debian build's test framework).
    NOISE = frozenset({"TestEvent", "RTCPSent", "RTCPReceived"})

    def __init__(self, port: int, user: AmiUser = OBSERVER_USER, timeout: float = 10.0) -> None:
        self.events: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        buf = b""
        while b"\r\n" not in buf:
            buf += self._sock.recv(4096)
        buf = buf.split(b"\r\n", 1)[1]  # the banner
        self._sock.sendall(
            f"Action: Login\r\nUsername: {user.name}\r\nSecret: {user.secret}\r\n\r\n".encode()
        )
        while b"\r\n\r\n" not in buf:
            buf += self._sock.recv(4096)
        first, self._pending = buf.split(b"\r\n\r\n", 1)
        if b"Response: Success" not in first:
            self._sock.close()
            raise RuntimeError(f"AMI login as {user.name!r} failed: {first!r}")
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="ami-observer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = self._pending
        self._sock.settimeout(0.5)
        while not self._stop:
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *packets, buf = buf.split(b"\r\n\r\n")
            parsed = [_parse(p) for p in packets]
            with self._lock:
                self.events.extend(e for e in parsed if "Event" in e and e["Event"] not in self.NOISE)

    def snapshot(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self.events)

    def find(self, event: str, **match: str) -> list[dict[str, str]]:
        return [
            e
            for e in self.snapshot()
            if e.get("Event") == event and all(e.get(k) == v for k, v in match.items())
        ]

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout: float = 30.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.snapshot():
                if predicate(ev):
                    return ev
            time.sleep(0.05)
        raise TimeoutError("AMI event not seen in time")

    def close(self) -> None:
        self._stop = True
        try:
            self._sock.close()
        finally:
            self._thread.join(2)


def _parse(packet: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in packet.decode(errors="replace").split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep:
            out[key] = value
    return out


class TcpProxy:
    """A loopback TCP relay a test can cut and restore: how we drop csat's AMI connection on demand."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepting = threading.Event()
        self._accepting.set()
        self._closed = False
        self._server = socket.create_server(("127.0.0.1", listen_port), reuse_port=False)
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            if not self._accepting.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until ``restore``."""
        self._accepting.clear()
        with self._lock:
            for s in self._conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._conns.clear()

    def restore(self) -> None:
        self._accepting.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class LocalCallCentre:
    """Private Asterisk + agent phones + csat serve, wired together on loopback ports."""

    def __init__(self, config: RigConfig) -> None:
        self.config = config
        self.work = config.work_dir.resolve()
        self.data_dir = Path(config.csat_env.get("CSAT_DATA_DIR", str(self.work / "var"))).resolve()
        ports = config.ports
        self.csat_env = {
            **os.environ,
            "CSAT_DATA_DIR": str(self.data_dir),
            "CSAT_AMI__PORT": str(config.csat_ami_port or ports.ami),
            "CSAT_AGI__PORT": str(ports.agi),
            "CSAT_WEB__PORT": str(ports.web),
            "CSAT_LOG_FORMAT": "json",
            **config.csat_env,
        }
        if "CSAT_CONFIG" not in config.csat_env:  # an admin's own config must not leak into a rig
            self.csat_env.pop("CSAT_CONFIG", None)
        self.csat = CsatProcess(self.csat_env, self.work / "csat.log", self.work)
        self.dialplan_path = self.work / "csat-survey.conf"
        self.asterisk = PrivateAsterisk(
            AsteriskConfig(
                run_dir=self.work / "asterisk",
                sip_port=ports.sip,
                ami_port=ports.ami,
                agent_count=config.agent_count,
                agent_base_port=ports.agent_base,
                rtp_start=ports.rtp_start,
                rtp_end=ports.rtp_end,
                queues=config.queues,
                routes=config.routes,
                ami_users=[AmiUser("csat", "csat-secret", "call,agent,agi", "call"), OBSERVER_USER],
                csat_dialplan=self.dialplan_path,
                test_sync=config.test_sync,
            )
        )
        self.phones: AgentPhones | None = None

    def prepare(self) -> None:
        """Schema, prompts and dialplan: what an admin runs once before the first call."""
        self.work.mkdir(parents=True, exist_ok=True)
        self.csat.run("db", "upgrade")
        self.csat.run("prompts", "build", "--no-force")
        self.csat.run("dialplan", "render", "-o", str(self.dialplan_path))

    def start(self) -> None:
        self.prepare()
        self.asterisk.start()
        self.phones = AgentPhones(
            self.work / "agents",
            count=self.config.agent_count,
            base_port=self.config.ports.agent_base,
            talk_ms=self.config.talk_ms,
        )
        self.phones.__enter__()
        self.csat.start()

    def call(
        self,
        cases: Sequence[CallCase],
        *,
        concurrency: int = 10,
        rate_per_s: float = 5.0,
        timeout_s: float = 240.0,
    ) -> list[CallResult]:
        run_dir = self.work / "calls" / f"run-{time.monotonic_ns()}"
        return run_calls(
            cases,
            work_dir=run_dir,
            sip_port=self.config.ports.sip,
            concurrency=concurrency,
            rate_per_s=rate_per_s,
            timeout_s=timeout_s,
            local_port=self.config.ports.uac,
        )

    def observer(self) -> AmiObserver:
        return AmiObserver(self.config.ports.ami)

    def stop(self) -> None:
        self.csat.stop()
        if self.phones is not None:
            self.phones.__exit__(None, None, None)
            self.phones = None
        self.asterisk.stop()

    def __enter__(self) -> LocalCallCentre:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def json_env(value: Any) -> str:
    """Nested settings go to the csat child as JSON in CSAT_* variables (pydantic-settings parses them)."""
    return json.dumps(value)
