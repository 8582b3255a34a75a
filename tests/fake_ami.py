"""A scripted fake Asterisk Manager Interface server on 127.0.0.1, for adapter tests.

It speaks enough AMI to exercise a client end to end: it sends the banner, and it answers Login (right
or wrong secret), Ping and Logoff. Other actions get an echo response (``Echo-<Key>: value`` for every
header), and ``DelayMs`` delays the reply so responses come back out of order. Tests can also script
failures: push arbitrary raw bytes in chosen TCP writes (split mid-line), garbage, packets that crash
asterisk-ami's parser, a silent connection (TCP open, nothing sent), a dropped socket, and a stop and
restart on the same port. Every action received is recorded as a parsed dict, so a test can prove that
no injected second action ever arrived.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence

BANNER = b"Asterisk Call Manager/5.0.1\r\n"
# Matches asterisk-ami's case-insensitive "^Response: " regex ("ſ" case-folds to "s"). Its key check
# ("reſponse" != "response") then raises a bare Exception, which kills the library's listener thread.
RESPONSE_READ_CRASHER = "Reſponse: Success\r\nActionID: nobody\r\n\r\n".encode()

ActionHandler = Callable[["FakeConnection", dict[str, str]], bytes | None]


def event_bytes(name: str, **headers: str) -> bytes:
    """One AMI event packet, CRLF-framed like Asterisk's."""
    lines = [f"Event: {name}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _response(status: str, action_id: str, **headers: str) -> bytes:
    lines = [f"Response: {status}", f"ActionID: {action_id}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_action(block: bytes) -> dict[str, str]:
    """Parse one action block the way Asterisk does: ``Key: value`` lines, first occurrence wins."""
    fields: dict[str, str] = {}
    for line in block.decode("utf-8", errors="replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep and key not in fields:
            fields[key] = value.lstrip(" ")
    return fields


class FakeConnection:
    """One accepted client socket with its reader thread."""

    def __init__(self, server: FakeAmi, sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index
        self.silent = server.silent_new_connections
        self.logged_in = False
        self.closed = threading.Event()
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"fake-ami-conn-{index}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def send(self, data: bytes) -> None:
        """Write bytes unless this connection was made silent or is closed (errors mean the peer is gone)."""
        if self.silent or self.closed.is_set():
            return
        with self._send_lock, contextlib.suppress(OSError):
            self.sock.sendall(data)

    def push(self, data: bytes, *, splits: Sequence[int] = (), pause: float = 0.02) -> None:
        """Send ``data`` as several TCP writes, cut at the ``splits`` byte offsets, pausing between them."""
        cuts = [0, *sorted(splits), len(data)]
        for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False)):
            if i and pause:
                time.sleep(pause)  # let the previous segment be read on its own
            self.send(data[a:b])

    def drop(self, *, reset: bool = False) -> None:
        """Close the socket: FIN by default, RST (SO_LINGER 0) with ``reset=True``."""
        self.closed.set()
        with contextlib.suppress(OSError):
            if reset:
                # SO_LINGER 0 makes close() send RST. SHUT_RD wakes our own reader thread without sending
                # anything. (close() from another thread does not release a socket blocked in recv().)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.sock.shutdown(socket.SHUT_RD)
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    def _run(self) -> None:
        buf = b""
        try:
            self.send(self.server.banner)
            while not self.closed.is_set():
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    block, buf = buf.split(b"\r\n\r\n", 1)
                    self._handle(block)
        finally:
            self.closed.set()
            with contextlib.suppress(OSError):
                self.sock.close()

    def _handle(self, block: bytes) -> None:
        fields = parse_action(block)
        self.server._record(self, fields, block)
        name = fields.get("Action", "").lower()
        aid = fields.get("ActionID", "")
        handler = self.server.handlers.get(name)
        if handler is not None:
            reply = handler(self, fields)
            if reply:
                self.send(reply)
            return
        if name == "login":
            ok = fields.get("Username") == self.server.username and fields.get("Secret") == self.server.secret
            if ok:
                self.logged_in = True
                # One write, as Asterisk does, so a test's push() can never land between the two.
                self.send(
                    _response("Success", aid, Message="Authentication accepted")
                    + event_bytes("FullyBooted", Privilege="system,all", Status="Fully Booted")
                )
                self.server._count_login(ok=True)
            else:
                self.server._count_login(ok=False)
                self.send(_response("Error", aid, Message="Authentication failed"))
                if self.server.close_after_bad_login:  # Asterisk ends the session after a failed login
                    time.sleep(0.01)
                    self.drop()
        elif name == "ping":
            self.send(_response("Success", aid, Ping="Pong", Timestamp=f"{time.time():.6f}"))
        elif name == "logoff":
            self.send(_response("Goodbye", aid, Message="Thanks for all the fish."))
            self.drop()
        else:
            echo = {f"Echo-{k}": v for k, v in fields.items() if k not in ("Action", "ActionID")}
            reply = _response("Success", aid, Message=f"{fields.get('Action', '')} ok", **echo)
            delay = float(fields.get("DelayMs", "0") or 0) / 1000.0
            if delay > 0:
                threading.Timer(delay, self._reply, args=(aid, reply)).start()
            else:
                self._reply(aid, reply)

    def _reply(self, action_id: str, data: bytes) -> None:
        with self.server._lock:
            self.server.replied_ids.append(action_id)
        self.send(data)


class FakeAmi:
    """The listening side. It binds 127.0.0.1 on a free port and keeps that port across stop()/start()."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        username: str = "csat",
        secret: str = "s3cret",
        banner: bytes = BANNER,
        close_after_bad_login: bool = True,
    ) -> None:
        self.username = username
        self.secret = secret
        self.banner = banner
        self.close_after_bad_login = close_after_bad_login
        self.silent_new_connections = False
        self.handlers: dict[str, ActionHandler] = {}
        self.port = 0
        self.actions: list[dict[str, str]] = []
        self.raw_actions: list[bytes] = []
        self.replied_ids: list[str] = []  # ActionIDs of echo replies, in the order they were sent
        self.connections: list[FakeConnection] = []
        self.logins = 0
        self.bad_logins = 0
        self._lock = threading.Condition()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> FakeAmi:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._accept_thread = threading.Thread(
            target=self._accept, args=(sock,), name="fake-ami-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every client, as an Asterisk restart would."""
        sock, self._listener = self._listener, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._accept_thread is not None:
            self._accept_thread.join(2)
        self.drop_all()

    def __enter__(self) -> FakeAmi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                fc = FakeConnection(self, conn, len(self.connections))
                self.connections.append(fc)
                self._lock.notify_all()
            fc.start()

    # -- scripting ---------------------------------------------------------------------------------------
    def latest(self) -> FakeConnection:
        with self._lock:
            return self.connections[-1]

    def push(self, data: bytes, *, splits: Sequence[int] = (), pause: float = 0.02) -> None:
        """Push raw bytes to the most recent connection (see FakeConnection.push)."""
        self.latest().push(data, splits=splits, pause=pause)

    def silence(self) -> None:
        """Make the current connection silent: TCP stays open but nothing more is ever sent on it."""
        self.latest().silent = True

    def drop_all(self, *, reset: bool = False) -> None:
        with self._lock:
            conns = list(self.connections)
        for conn in conns:
            if not conn.closed.is_set():
                conn.drop(reset=reset)

    # -- observation -------------------------------------------------------------------------------------
    def _record(self, conn: FakeConnection, fields: dict[str, str], raw: bytes) -> None:
        with self._lock:
            self.actions.append(fields)
            self.raw_actions.append(raw)
            self._lock.notify_all()

    def _count_login(self, *, ok: bool) -> None:
        with self._lock:
            if ok:
                self.logins += 1
            else:
                self.bad_logins += 1
            self._lock.notify_all()

    def action_names(self) -> list[str]:
        with self._lock:
            return [a.get("Action", "") for a in self.actions]

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` (evaluated under the server lock) holds; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.05))
            return True

    def wait_logins(self, count: int, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda: self.logins >= count, timeout)
