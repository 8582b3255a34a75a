"""The survey leg's adapter over pyst2's AGI class, for FastAGI sockets.

pyst2 0.5.1 speaks the AGI protocol correctly once it is given text streams, but it has rough edges
for a server (see ../shared/TELEPHONY.md §11); this module works around each of them:

- ``AGI.__init__`` installs a SIGHUP handler, which raises outside the main thread: we skip it
  (FastAGI reports a hang-up as a ``HANGUP`` line on the socket, not as a signal).
- it writes every environment line and command to ``stderr``, caller ID included: we give it a
  null sink, so caller numbers never reach a log.
- its ``_quote`` does no escaping: we refuse any argument holding a quote, a backslash, white
  space where none is allowed, or CR/LF, before anything is sent.
- a ``HANGUP`` line or a ``511`` (dead channel) answer confuses its result parser: we map both,
  and pyst2's own hang-up errors, to :class:`~ivr.survey_script.CallerHungUp`.
"""

from __future__ import annotations

import io
import logging
import re
import socket
from pathlib import Path
from typing import Any

from asterisk.agi import AGI, AGIAppError, AGIHangup, AGIUnknownError

from ivr.survey_script import CallerHungUp

log = logging.getLogger("csat.agi")

_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_./\-:@+]+")
_SAFE_TEXT = re.compile(r'[^"\\\r\n]*')


class AgiArgumentError(ValueError):
    pass


class _NullSink(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


class _FlushingWriter(io.TextIOBase):
    """Every AGI command must reach Asterisk at once; pyst2 flushes, but be sure of it."""

    def __init__(self, inner: io.TextIOBase) -> None:
        self._inner = inner

    def write(self, s: str) -> int:
        n = self._inner.write(s)
        self._inner.flush()
        return n

    def flush(self) -> None:
        self._inner.flush()


class _HangupAwareReader(io.TextIOBase):
    """FastAGI announces a hang-up with a ``HANGUP`` line that pyst2 would parse as a bad result."""

    def __init__(self, inner: io.TextIOBase) -> None:
        self._inner = inner

    def readline(self, size: int = -1) -> str:  # noqa: ARG002 - pyst2 never passes a size
        line = self._inner.readline()
        if line == "":
            raise CallerHungUp("AGI socket closed")
        if line.strip() == "HANGUP":
            raise CallerHungUp("HANGUP from Asterisk")
        return line


class _ServerAGI(AGI):  # type: ignore[misc]
    """pyst2's AGI minus the SIGHUP handler (threads) and the stderr echo (caller numbers)."""

    def __init__(self, stdin: io.TextIOBase, stdout: io.TextIOBase) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = _NullSink()
        self._got_sighup = False
        self.env: dict[str, str] = {}
        self._get_agi_env()


class AgiSession:
    """One FastAGI connection: the request's environment plus the survey channel operations."""

    def __init__(self, sock: socket.socket) -> None:
        # Separate reader and writer: one TextIOWrapper for both drops read-ahead on every write,
        # and with it a HANGUP line that arrived in the same packet as the previous result.
        reader = sock.makefile("r", encoding="utf-8", errors="replace", newline="\n")
        writer = sock.makefile("w", encoding="utf-8", newline="\n")
        self._agi = _ServerAGI(_HangupAwareReader(reader), _FlushingWriter(writer))
        self.env = dict(self._agi.env)

    def arg(self, index: int) -> str:
        return self.env.get(f"agi_arg_{index}", "")

    # -- SurveyChannel --------------------------------------------------------------------------
    def ask(self, prompt: str, timeout_ms: int, max_digits: int) -> str:
        _check_token(prompt)
        keys = self._call(lambda: self._agi.get_data(prompt, timeout_ms, max_digits))
        if keys == "-1":
            raise CallerHungUp("GET DATA returned -1")
        return keys

    def play(self, prompt: str) -> None:
        _check_token(prompt)
        self._call(lambda: self._agi.stream_file(prompt))

    def record(self, path: Path, max_seconds: int) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        stem = str(path.with_suffix(""))
        _check_token(stem)
        self._call(
            lambda: self._agi.execute("RECORD FILE", stem, "wav", '"#"', max_seconds * 1000, 0, "BEEP", "s=5")
        )
        return path.exists()

    def announce_prompt(self, number: int) -> None:  # replaced per session when the test hook is on
        return None

    def send_text(self, text: str) -> None:
        if not _SAFE_TEXT.fullmatch(text):
            raise AgiArgumentError(f"text not sendable over AGI: {text!r}")
        self._call(lambda: self._agi.execute("SEND TEXT", f'"{text}"'))

    def set_variable(self, name: str, value: str) -> None:
        _check_token(name)
        if not _SAFE_TEXT.fullmatch(value):
            raise AgiArgumentError(f"value not settable over AGI: {value!r}")
        self._call(lambda: self._agi.execute("SET VARIABLE", name, f'"{value}"'))

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except (AGIHangup, AGIAppError) as exc:
            raise CallerHungUp(str(exc)) from exc
        except AGIUnknownError as exc:
            if exc.args and exc.args[0] == 511:  # "Command Not Permitted on a dead channel"
                raise CallerHungUp("dead channel") from exc
            raise
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise CallerHungUp("AGI socket closed") from exc


def _check_token(value: str) -> None:
    if not _SAFE_TOKEN.fullmatch(value):
        raise AgiArgumentError(f"refusing to send {value!r} over AGI: only [A-Za-z0-9_./-:@+] allowed")
