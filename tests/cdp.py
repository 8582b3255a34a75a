"""A tiny Chrome DevTools Protocol client for the browser tests: stdlib only, one blocking socket.

Why not a library: the venv has no websocket client, and CDP needs very little of WebSocket (text
frames, continuation, ping/close). Everything runs on the test's thread: ``call`` sends a command and
reads until its reply comes, keeping every event that arrives meanwhile so ``wait_event`` can still
find one that came early (a page's load event often beats the reply to the click that caused it).

Sessions are "flattened" (``Target.attachToTarget`` with ``flatten``): page commands carry a
``sessionId`` on the browser's one connection, so downloads (a browser-level domain) and the page share
a socket.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

Event = dict[str, Any]


class CdpError(RuntimeError):
    """Chromium answered a command with an error, or the connection broke."""


class CdpTimeout(CdpError):
    pass


class CdpConnection:
    def __init__(self, ws_url: str, timeout: float = 15.0) -> None:
        parts = urlsplit(ws_url)
        if parts.scheme != "ws" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise CdpError(f"refusing a DevTools endpoint that is not on loopback: {ws_url}")
        self.timeout = timeout
        self._sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        self._buf = b""
        self._next_id = 0
        self.events: list[Event] = []
        self._handshake(parts.netloc, parts.path or "/")

    # -- WebSocket ---------------------------------------------------------------------------------

    def _handshake(self, host: str, path: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self._sock.sendall(request.encode())
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise CdpError(f"DevTools refused the WebSocket upgrade: {status.decode(errors='replace')}")

    def _fill(self) -> None:
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise CdpError("Chromium closed the DevTools connection")
        self._buf += chunk

    def _frame(self) -> tuple[bool, int, bytes]:
        """Reads one frame, consuming nothing until all of it is buffered: a timeout mid-frame leaves
        the stream intact for the next read."""
        while True:
            buf = self._buf
            if len(buf) >= 2:
                n, start = buf[1] & 0x7F, 2
                if n == 126 and len(buf) >= 4:
                    (n,), start = struct.unpack("!H", buf[2:4]), 4
                elif n == 127 and len(buf) >= 10:
                    (n,), start = struct.unpack("!Q", buf[2:10]), 10
                if n < 126 or start > 2:
                    masked = bool(buf[1] & 0x80)
                    end = start + (4 if masked else 0) + n
                    if len(buf) >= end:
                        self._buf = buf[end:]
                        payload = buf[end - n : end]
                        if masked:
                            mask = buf[start : start + 4]
                            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                        return bool(buf[0] & 0x80), buf[0] & 0x0F, payload
            self._fill()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        """Client frames must be masked (RFC 6455 §5.3)."""
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(header + mask + masked)

    def _read_message(self) -> str:
        """One whole text message; answers pings, follows continuation frames."""
        parts: list[bytes] = []
        while True:
            fin, opcode, payload = self._frame()
            if opcode == 0x8:
                raise CdpError("Chromium closed the DevTools connection")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            parts.append(payload)
            if fin:
                return b"".join(parts).decode()

    # -- CDP ---------------------------------------------------------------------------------------

    def _receive(self, deadline: float) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise CdpTimeout("timed out")
        self._sock.settimeout(left)
        try:
            return json.loads(self._read_message())
        except TimeoutError as exc:
            raise CdpTimeout("timed out") from exc

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        """Send a command and return its result; events read meanwhile are kept for ``wait_event``."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._send_frame(0x1, json.dumps(msg).encode())
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                reply = self._receive(deadline)
            except CdpTimeout:
                raise CdpTimeout(f"no reply to {method} within {self.timeout:.0f} s") from None
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CdpError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(
        self, method: str, timeout: float, where: Callable[[dict[str, Any]], bool] = lambda _p: True
    ) -> dict[str, Any]:
        """The params of the first kept-or-arriving event ``method`` matching ``where`` (consumed)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event["method"] == method and where(event.get("params", {})):
                    del self.events[i]
                    return event.get("params", {})
            try:
                message = self._receive(deadline)
            except CdpTimeout:
                raise CdpTimeout(f"no {method} event within {timeout:.0f} s") from None
            if "method" in message:
                self.events.append(message)

    def drop_events(self, method: str) -> None:
        self.events = [e for e in self.events if e["method"] != method]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(0x8, struct.pack("!H", 1000))
        self._sock.close()
