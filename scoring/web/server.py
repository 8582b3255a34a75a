"""Running the dashboard inside ``csat serve``: uvicorn in its own thread, beside the survey server.

The dashboard must never take the telephony side down with it: if its port is taken or it crashes,
that is logged and calls go on being surveyed.
"""

from __future__ import annotations

import logging
import threading
import time

import uvicorn
from sqlalchemy import Engine

from ivr.settings import Settings
from scoring.web.app import create_app
from scoring.web.deps import RuntimeStatus

log = logging.getLogger("csat.web")


class DashboardServer:
    def __init__(self, settings: Settings, engine: Engine, runtime: RuntimeStatus) -> None:
        self.settings = settings
        config = uvicorn.Config(
            create_app(settings, engine, runtime),
            host=settings.web.host,
            port=settings.web.port,
            log_config=None,  # our JSON logging stays in charge
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="csat-web", daemon=True)
        self.failed: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.web.host}:{self.settings.web.port}/"

    def _run(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # uvicorn exits when it cannot bind
            self.failed = f"could not listen on {self.settings.web.host}:{self.settings.web.port}"
        except Exception as exc:  # noqa: BLE001 - the IVR keeps running whatever happens here
            self.failed = f"{type(exc).__name__}: {exc}"
        if self.failed:
            log.error("dashboard stopped", extra={"error": self.failed})

    def start(self, wait_s: float = 5.0) -> bool:
        self._thread.start()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not self._server.started and self._thread.is_alive():
            time.sleep(0.05)
        if self._server.started:
            log.info("dashboard serving", extra={"url": self.url})
        return self._server.started

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
