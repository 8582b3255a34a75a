"""The FastAGI server: one thread per survey call, so a slow caller never holds up another.

Stopping the server closes every open survey socket: Asterisk's AGI() then returns at once and
the dialplan plays the goodbye, so a csat restart never leaves a caller in silence.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
import time
from typing import Any

from ivr.agi_channel import AgiSession
from ivr.survey_leg import SurveyLeg
from ivr.survey_script import CallerHungUp

log = logging.getLogger("csat.fastagi")


class _Handler(socketserver.BaseRequestHandler):
    server: FastAgiServer

    def handle(self) -> None:
        accepted = time.monotonic()  # the caller's silence starts here (ivr.metrics: dead air)
        self.server.track(self.request, add=True)
        env: dict[str, str] = {}
        session: AgiSession | None = None
        try:
            session = AgiSession(self.request)
            env = session.env
            self.server.leg.handle(session, accepted=accepted)
        except CallerHungUp:
            pass
        except Exception as exc:  # noqa: BLE001 - one call's failure must not reach the server
            self.server.leg.fail(session, env, exc)
        finally:
            self.server.track(self.request, add=False)


class FastAgiServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 overflows when many agents hang up at once: the dropped
    # connect waits a 1 s TCP retransmit, and Asterisk gives a FastAGI connect only 2 s.
    request_queue_size = 1024

    def __init__(self, host: str, port: int, leg: SurveyLeg) -> None:
        self.leg = leg
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    def track(self, sock: socket.socket, *, add: bool) -> None:
        with self._open_lock:
            (self._open.add if add else self._open.discard)(sock)

    @property
    def active_sessions(self) -> int:
        with self._open_lock:
            return len(self._open)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="fastagi", daemon=True)
        self._thread.start()
        host, port = self.server_address[:2]
        log.info("FastAGI listening", extra={"host": host, "port": port})

    def stop(self) -> None:
        self.shutdown()
        with self._open_lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("FastAGI connection error", extra={"peer": str(client_address)})
