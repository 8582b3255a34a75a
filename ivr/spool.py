"""A local write-ahead journal for when the database is down: the survey goes on, nothing is lost.

Each write the store could not make is appended as one JSON line and fsynced before the caller
hears the next question. ``replay`` later applies the lines in order through the same idempotent
writes, so a line applied twice (a crash between apply and truncate) changes nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

PENDING = "pending.jsonl"
REPLAYING = "replaying.jsonl"


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"__dt__": value.isoformat()}
    return value


def _decode(obj: dict[str, Any]) -> Any:
    if set(obj) == {"__dt__"}:
        return datetime.fromisoformat(obj["__dt__"])
    return obj


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    @property
    def pending_path(self) -> Path:
        return self.directory / PENDING

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Thread lock plus a file lock: ``csat spool replay`` may run beside a spooling ``csat serve``."""
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / ".lock", "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _pending_lines(self) -> list[str]:
        """Lines not yet applied: a replay in progress (or cut short) first, then newer appends."""
        lines: list[str] = []
        for path in (self.directory / REPLAYING, self.pending_path):
            if path.exists():
                lines += [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return lines

    def pending_uniqueids(self) -> set[str]:
        """Calls with writes still in the spool: their new writes must queue up behind them."""
        with self._locked():
            payloads = [json.loads(line)["payload"] for line in self._pending_lines()]
        return {p.get("uniqueid") or p.get("call_uniqueid") or "" for p in payloads}

    def append(self, kind: str, payload: dict[str, Any]) -> None:
        line = json.dumps({"kind": kind, "payload": payload}, default=_encode, sort_keys=True)
        with self._locked(), open(self.pending_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def pending_count(self) -> int:
        with self._locked():
            return len(self._pending_lines())

    def replay(self, apply: Callable[[str, dict[str, Any]], None]) -> tuple[int, int]:
        """Apply pending lines in order; stop at the first failure and keep it and the rest.

        The pending file is moved aside first, so ``append`` (another thread, or ``csat serve`` while
        an admin runs ``csat spool replay``) never waits for the database and never loses a line; a
        second replayer finds the replay lock taken and leaves. Returns (applied, left).
        """
        replaying = self.directory / REPLAYING
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".replay.lock", "a") as replay_lock:
            try:
                fcntl.flock(replay_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0, self.pending_count()
            try:
                with self._locked():
                    if not replaying.exists():  # else: left over by a replayer that died; finish it
                        if not self.pending_path.exists():
                            return 0, 0
                        os.replace(self.pending_path, replaying)
                lines = [ln for ln in replaying.read_text(encoding="utf-8").splitlines() if ln.strip()]
                applied = 0
                for line in lines:
                    record = json.loads(line, object_hook=_decode)
                    try:
                        apply(record["kind"], record["payload"])
                    except Exception:
                        break
                    applied += 1
                rest = lines[applied:]
                with self._locked():
                    newer = (
                        self.pending_path.read_text(encoding="utf-8") if self.pending_path.exists() else ""
                    )
                    merged = "".join(ln + "\n" for ln in rest) + newer
                    if merged:
                        tmp = self.pending_path.with_suffix(".tmp")
                        tmp.write_text(merged, encoding="utf-8")
                        os.replace(tmp, self.pending_path)
                    replaying.unlink()
                return applied, len(rest)
            finally:
                fcntl.flock(replay_lock, fcntl.LOCK_UN)
