"""Every write csat makes about a call goes through here: to the database, or to the spool if it is down.

Once a call has anything in the spool, its later writes are spooled too until a replay, so the order
of one call's writes never changes whichever way they reach the database.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from ivr import db
from ivr.models import SurveyState
from ivr.spool import Spool

log = logging.getLogger("csat.store")


def is_outage(exc: BaseException) -> bool:
    """A database that cannot be reached (spool and retry) — not one that rejects the write (a bug)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class CallStore:
    def __init__(self, engine: Engine, spool: Spool) -> None:
        self.engine = engine
        self.spool = spool
        # After a restart the spool may still hold writes: keep those calls on the spool path too.
        self._spooled_calls: set[str] = spool.pending_uniqueids()
        self._lock = threading.Lock()

    # -- writes ---------------------------------------------------------------------------------
    def upsert_call(self, uniqueid: str, linkedid: str, **fields: Any) -> None:
        self._write("call", {"uniqueid": uniqueid, "linkedid": linkedid, **fields})

    def set_state(
        self,
        uniqueid: str,
        state: SurveyState,
        reason: str | None = None,
        *,
        only_from: frozenset[str] | None = None,
        **fields: Any,
    ) -> None:
        payload = {"uniqueid": uniqueid, "state": state.value, "reason": reason, "fields": fields}
        payload["only_from"] = sorted(only_from) if only_from is not None else None
        self._write("state", payload)

    def add_answer(self, answer: dict[str, Any]) -> None:
        self._write("answer", answer)

    # -- reads (best effort: a down database must not stop a call) -------------------------------
    def last_surveyed_at(self, caller_hash: str) -> datetime | None:
        try:
            return db.last_surveyed_at(self.engine, caller_hash)
        except DBAPIError as exc:
            if not is_outage(exc):
                raise
            log.warning("database down: cooldown not checked", extra={"error": str(exc).splitlines()[0]})
            return None

    # -- plumbing -------------------------------------------------------------------------------
    def _write(self, kind: str, payload: dict[str, Any]) -> None:
        uniqueid = payload.get("uniqueid") or payload.get("call_uniqueid") or ""
        with self._lock:
            must_spool = uniqueid in self._spooled_calls
        if not must_spool:
            try:
                apply_record(self.engine, kind, payload)
                return
            except DBAPIError as exc:
                if not is_outage(exc):
                    log.error("database rejected a write", extra={"uniqueid": uniqueid, "kind": kind})
                    raise
                log.error(
                    "database write failed; spooled",
                    extra={"uniqueid": uniqueid, "kind": kind, "error": str(exc).splitlines()[0]},
                )
        with self._lock:
            self._spooled_calls.add(uniqueid)
            self.spool.append(kind, payload)

    def replay_spool(self) -> tuple[int, int]:
        """Apply what was spooled while the database was down; safe to call at any time."""
        with self._lock:
            applied, left = self.spool.replay(lambda kind, payload: apply_record(self.engine, kind, payload))
            if left == 0:
                self._spooled_calls.clear()
        if applied or left:
            log.info("spool replay", extra={"applied": applied, "left": left})
        return applied, left


def apply_record(engine: Engine, kind: str, payload: dict[str, Any]) -> None:
    if kind == "call":
        fields = dict(payload)
        db.upsert_call(engine, fields.pop("uniqueid"), fields.pop("linkedid"), **fields)
    elif kind == "state":
        only_from = payload.get("only_from")
        db.set_survey_state(
            engine,
            payload["uniqueid"],
            SurveyState(payload["state"]),
            payload.get("reason"),
            only_from=frozenset(only_from) if only_from is not None else None,
            **payload.get("fields", {}),
        )
    elif kind == "answer":
        db.insert_answer(engine, payload)
    else:
        raise ValueError(f"unknown spool record kind {kind!r}")
