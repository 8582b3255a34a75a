"""Rows to a terminal table, JSON or CSV: the one place the CLI's ``--format`` is honoured."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any


def iso_utc(value: datetime | None) -> str | None:
    """Stored times are naive UTC; exports say so explicitly."""
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def render(rows: Sequence[Mapping[str, Any]], fmt: str, columns: Sequence[str]) -> str:
    if fmt == "json":
        return json.dumps([dict(r) for r in rows], indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c) for c in columns})
        return buf.getvalue().rstrip("\n")
    if fmt == "table":
        return _table(rows, columns)
    raise ValueError(f"unknown format {fmt!r}: use table, json or csv")


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    if not rows:
        out.append("(no rows)")
    return "\n".join(out)
