"""Start and stop a private Asterisk 16 for the csat demo and the telephony tests.

The config tree is rendered from the templates in ``dialplan/demo/`` into ``<run_dir>/etc`` and
every Asterisk directory (run, log, spool, db, ...) lives under ``run_dir``, so a rig never touches
``/etc/asterisk`` or a system Asterisk, and several rigs can run side by side on different ports.

Templates use ``@NAME@`` placeholders (not ``${NAME}``: the dialplan itself is full of ``${VAR}``).
Repeated blocks (agents, queues, routes, AMI users) are rendered from ``dialplan/demo/fragments/``
and substituted as one placeholder each.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

ASTERISK_BIN = "/usr/sbin/asterisk"
DEMO_TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "dialplan" / "demo"
SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en")
# Core prompts played as hold music (no MOH package is installed on the rig machines).
MOH_PROMPTS = ("queue-periodic-announce.gsm", "queue-thankyou.gsm")
RUN_SUBDIRS = ("etc", "run", "log", "spool", "db", "varlib", "cache", "keys", "moh")

_PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_EXTEN = re.compile(r"^_?[A-Za-z0-9*#+.!\[\]-]+$")
_AMI_PERMS = re.compile(r"^[a-z,]*$")


class AsteriskError(RuntimeError):
    """The private Asterisk could not be configured, started, reached or stopped."""


@dataclass(frozen=True)
class Route:
    """One extension of the demo PBX: dialling ``exten`` queues the caller on ``queue``."""

    exten: str
    queue: str
    max_wait_s: int = 30


@dataclass(frozen=True)
class AmiUser:
    """A manager.conf user; ``read``/``write`` are Asterisk permission class lists."""

    name: str
    secret: str
    read: str
    write: str


def _default_queues() -> dict[str, list[str]]:
    agents = ["agent1", "agent2", "agent3"]
    return {"support": list(agents), "sales": list(agents), "empty": []}


def _default_routes() -> list[Route]:
    return [Route("100", "support"), Route("200", "sales"), Route("300", "empty", 4)]


def _default_ami_users() -> list[AmiUser]:
    return [AmiUser("csat", "csat-secret", "call,agent,agi", "call")]


@dataclass
class AsteriskConfig:
    """Everything that varies between rigs; the rest is fixed in the templates.

    Agent ``agentK`` (K = 1..agent_count) is reached at ``127.0.0.1:agent_base_port + K``.
    """

    run_dir: Path
    sip_port: int = 5060
    ami_port: int = 5038
    agent_count: int = 3
    agent_base_port: int = 5070
    rtp_start: int = 20000
    rtp_end: int = 20999
    queues: dict[str, list[str]] = field(default_factory=_default_queues)
    routes: list[Route] = field(default_factory=_default_routes)
    ami_users: list[AmiUser] = field(default_factory=_default_ami_users)
    csat_dialplan: Path | None = None
    test_sync: bool = False
    template_dir: Path = DEMO_TEMPLATE_DIR

    @property
    def agent_names(self) -> list[str]:
        return [f"agent{k}" for k in range(1, self.agent_count + 1)]

    def validate(self) -> None:
        """Reject values that would produce a broken or injectable config file."""
        ports = [self.sip_port, self.ami_port, self.rtp_start, self.rtp_end]
        ports += [self.agent_base_port + k for k in range(1, self.agent_count + 1)]
        if not all(1 <= p <= 65535 for p in ports):
            raise AsteriskError(f"port out of range in {ports}")
        if self.rtp_start >= self.rtp_end:
            raise AsteriskError("rtp_start must be below rtp_end")
        agents = set(self.agent_names)
        for queue, members in self.queues.items():
            _check(_NAME, queue, "queue name")
            unknown = [m for m in members if m not in agents]
            if unknown:
                raise AsteriskError(f"queue {queue!r}: unknown members {unknown} (agents: {sorted(agents)})")
        for route in self.routes:
            _check(_EXTEN, route.exten, "route exten")
            if route.queue not in self.queues:
                raise AsteriskError(f"route {route.exten}: unknown queue {route.queue!r}")
            if route.max_wait_s <= 0:
                raise AsteriskError(f"route {route.exten}: max_wait_s must be positive")
        for user in self.ami_users:
            _check(_NAME, user.name, "AMI user name")
            _check(re.compile(r"^[^\s;\[\]]+$"), user.secret, "AMI secret")
            _check(_AMI_PERMS, user.read, "AMI read permissions")
            _check(_AMI_PERMS, user.write, "AMI write permissions")
        if self.csat_dialplan is not None:
            path = str(Path(self.csat_dialplan).resolve())
            if any(c in path for c in '"\n\r;'):
                raise AsteriskError(f"csat dialplan path {path!r} cannot be #included")
            if not Path(path).is_file():
                raise AsteriskError(f"csat dialplan {path} does not exist")


def _check(pattern: re.Pattern[str], value: str, what: str) -> None:
    if not pattern.match(value):
        raise AsteriskError(f"invalid {what}: {value!r}")


def asterisk_available() -> bool:
    """True if the Asterisk binary is installed (tests skip otherwise)."""
    return Path(ASTERISK_BIN).is_file() and os.access(ASTERISK_BIN, os.X_OK)


def render_template(text: str, values: Mapping[str, str], name: str = "<template>") -> str:
    """Replace every ``@NAME@``; an unknown placeholder is an error, not a silent blank."""

    def repl(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise AsteriskError(f"{name}: no value for placeholder @{key}@")
        return values[key]

    return _PLACEHOLDER.sub(repl, text)


class PrivateAsterisk:
    """One Asterisk process running on a private config tree under ``config.run_dir``."""

    def __init__(self, config: AsteriskConfig) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir).resolve()
        self.etc_dir = self.run_dir / "etc"
        self.log_dir = self.run_dir / "log"
        self.conf_file = self.etc_dir / "asterisk.conf"
        self.control_socket = self.run_dir / "run" / "asterisk.ctl"
        self._proc: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None

    # ------------------------------------------------------------------ paths
    @property
    def full_log(self) -> Path:
        """The messages log (notice, warning, error, verbose): read it when a call misbehaves."""
        return self.log_dir / "messages"

    @property
    def console_log(self) -> Path:
        """stdout/stderr of the Asterisk process (startup failures land here)."""
        return self.log_dir / "console.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------- rendering
    def render(self) -> None:
        """Write the whole config tree and the MOH directory into ``run_dir``."""
        self.config.validate()
        for sub in RUN_SUBDIRS:
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        values = self._values()
        template_dir = Path(self.config.template_dir)
        for template in sorted(template_dir.glob("*.conf")):
            text = render_template(template.read_text(), values, template.name)
            (self.etc_dir / template.name).write_text(text)
        self._link_moh()

    def _fragment(self, name: str, values: Mapping[str, str]) -> str:
        path = Path(self.config.template_dir) / "fragments" / name
        return render_template(path.read_text(), values, f"fragments/{name}")

    def _values(self) -> dict[str, str]:
        cfg = self.config
        return {
            "RUN_DIR": str(self.run_dir),
            "SIP_PORT": str(cfg.sip_port),
            "AMI_PORT": str(cfg.ami_port),
            "RTP_START": str(cfg.rtp_start),
            "RTP_END": str(cfg.rtp_end),
            "TEST_SYNC": "1" if cfg.test_sync else "0",
            "AGENT_ENDPOINTS": self._agent_endpoints(),
            "QUEUES": self._queues(),
            "ROUTES": self._routes(),
            "AMI_USERS": self._ami_users(),
            "CSAT_INCLUDE": self._csat_include(),
        }

    def _agent_endpoints(self) -> str:
        port = self.config.agent_base_port
        return "".join(
            self._fragment("pjsip-agent.conf", {"AGENT": agent, "AGENT_PORT": str(port + k)})
            for k, agent in enumerate(self.config.agent_names, start=1)
        )

    def _queues(self) -> str:
        blocks = []
        for queue, members in self.config.queues.items():
            lines = "".join(self._fragment("queue-member.conf", {"AGENT": m}) for m in members)
            blocks.append(self._fragment("queue.conf", {"QUEUE": queue, "MEMBERS": lines}) + "\n")
        return "".join(blocks)

    def _routes(self) -> str:
        return "".join(
            self._fragment("route.conf", {"EXTEN": r.exten, "QUEUE": r.queue, "MAX_WAIT": str(r.max_wait_s)})
            for r in self.config.routes
        )

    def _ami_users(self) -> str:
        return "".join(
            self._fragment(
                "manager-user.conf", {"NAME": u.name, "SECRET": u.secret, "READ": u.read, "WRITE": u.write}
            )
            for u in self.config.ami_users
        )

    def _csat_include(self) -> str:
        """``#include`` of the csat dialplan (absolute path), or nothing when there is none."""
        if self.config.csat_dialplan is None:
            return "; no csat dialplan given: Gosub(csat-survey,s,1) fails and the call hangs up"
        return f'#include "{Path(self.config.csat_dialplan).resolve()}"'

    def _link_moh(self) -> None:
        moh = self.run_dir / "moh"
        for prompt in MOH_PROMPTS:
            link = moh / prompt
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(SOUNDS_DIR / prompt)

    # ------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 20.0) -> None:
        """Render the tree, start Asterisk and wait until it is fully booted.

        Refuses to continue (stops the process, raises) unless the control socket appears in the
        private astrundir: otherwise asterisk.conf was not honoured and Asterisk is running on the
        system directories.
        """
        if not asterisk_available():
            raise AsteriskError(f"{ASTERISK_BIN} not found; run scripts/install-system-deps.sh")
        if self.running:
            raise AsteriskError("already started")
        self._refuse_if_live()
        self.render()
        self._clear_stale_runfiles()
        self._launch()
        deadline = time.monotonic() + timeout
        try:
            self._wait_for_socket(deadline)
            self._wait_fully_booted(deadline)
        except BaseException:
            self.stop()
            raise

    def _refuse_if_live(self) -> None:
        """Never hijack or clobber an Asterisk that still runs on this run_dir."""
        if self.control_socket.exists() and self.conf_file.exists():
            probe = subprocess.run(
                [ASTERISK_BIN, "-C", str(self.conf_file), "-rx", "core show version"],
                capture_output=True,
                timeout=10,
                check=False,
            )
            if probe.returncode == 0 and b"Asterisk" in probe.stdout:
                raise AsteriskError(f"an Asterisk is already running on {self.run_dir}; stop it first")

    def _clear_stale_runfiles(self) -> None:
        for name in ("asterisk.ctl", "asterisk.pid"):
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / "run" / name).unlink()

    def _launch(self) -> None:
        console = open(self.console_log, "ab")  # noqa: SIM115 - closed in stop()
        self._console = console  # stop() closes it even if Popen fails
        self._proc = subprocess.Popen(
            [ASTERISK_BIN, "-C", str(self.conf_file), "-f", "-n"],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            cwd=self.run_dir,
            start_new_session=True,  # own process group: stop() can kill everything it forked
        )

    def _wait_for_socket(self, deadline: float) -> None:
        while not self.control_socket.exists():
            if self._proc is not None and self._proc.poll() is not None:
                raise AsteriskError(
                    f"asterisk exited with {self._proc.returncode} during startup; "
                    f"see {self.console_log}:\n{self._tail(self.console_log)}"
                )
            if time.monotonic() > deadline:
                raise AsteriskError(
                    f"no control socket at {self.control_socket}: asterisk.conf [directories] was not "
                    f"honoured (a '[directories](!)' template?) or startup hung; refusing to continue.\n"
                    f"{self._tail(self.console_log)}"
                )
            time.sleep(0.05)

    def _wait_fully_booted(self, deadline: float) -> None:
        remaining = max(1.0, deadline - time.monotonic())
        try:
            self.cli("core waitfullybooted", timeout=remaining)
        except subprocess.TimeoutExpired as exc:
            raise AsteriskError(f"asterisk did not finish booting; see {self.full_log}") from exc
        if not self.control_socket.exists():
            raise AsteriskError(f"control socket {self.control_socket} vanished after boot")

    def cli(self, command: str, timeout: float = 15.0) -> str:
        """Run one CLI command on this Asterisk (``asterisk -C <conf> -rx``) and return its output."""
        if not self.control_socket.exists():
            raise AsteriskError(f"asterisk is not running (no {self.control_socket})")
        result = subprocess.run(
            [ASTERISK_BIN, "-C", str(self.conf_file), "-rx", command],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace")
            raise AsteriskError(f"asterisk -rx {command!r} failed ({result.returncode}): {stderr}")
        return result.stdout.decode(errors="replace")

    def reload_dialplan(self) -> None:
        """Re-read extensions.conf and the included csat dialplan (after csat re-rendered it)."""
        output = self.cli("dialplan reload")
        if "reloaded" not in output.lower():
            raise AsteriskError(f"dialplan reload failed: {output.strip()}; see {self.full_log}")

    def stop(self) -> None:
        """Stop Asterisk: ``core stop now``, then SIGTERM/SIGKILL the process group. Idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            asked = False
            with contextlib.suppress(AsteriskError, subprocess.TimeoutExpired, OSError):
                self.cli("core stop now", timeout=5)
                asked = True
            # Without a control socket nobody asked Asterisk to stop: signal it right away.
            _wait_or_kill(proc, grace=5.0 if asked else 0.0)
        self._proc = None
        console = self._console
        self._console = None
        if console is not None:
            console.close()

    def __enter__(self) -> PrivateAsterisk:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _tail(path: Path, lines: int = 20) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _wait_or_kill(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Give the process ``grace`` seconds, then SIGTERM and finally SIGKILL its whole group.

    Signals are only sent while the leader is unreaped, so the group id cannot belong to anyone else.
    """
    for sig, wait in ((None, grace), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        break
