"""Caller numbers are personal data: csat keeps only a keyed hash, enough for cooldown and opt-out."""

from __future__ import annotations

import hashlib
import hmac


def normalize_number(number: str | None) -> str | None:
    """Digits (and a leading +) only, so '+1 (555) 010-0' and '+15550100' hash alike."""
    if not number:
        return None
    cleaned = "".join(c for c in number.strip() if c.isdigit())
    if not cleaned:
        return None
    return ("+" if number.strip().startswith("+") else "") + cleaned


def caller_hash(secret: str, number: str | None) -> str | None:
    normalized = normalize_number(number)
    if normalized is None:
        return None
    return hmac.new(secret.encode(), normalized.encode(), hashlib.sha256).hexdigest()


def sample_draw(secret: str, uniqueid: str) -> float:
    """A reproducible draw in [0, 1) per call: the sample can be audited and re-derived later."""
    digest = hmac.new(secret.encode(), f"sample:{uniqueid}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
