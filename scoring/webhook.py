"""The optional outgoing webhook: one JSON POST per new alert, to a chat bot, a ticket system, a pager.

Best effort by design: the alert is already stored and on the dashboard before it is posted, so a
receiver that is down, slow or wrong must never stop the scanner. :func:`post_alert` therefore turns
every failure into a status string (kept in ``alerts.webhook_status``) instead of raising. There is no
retry: the status shows on the alert, and the dashboard is the system of record.

Redirects are not followed: urllib would turn a redirected POST into a bodiless GET, which a receiver
would see as an empty alert; a 3xx is reported as the error it is for a webhook.
Plain urllib, because httpx is only a test dependency of csat.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import HTTPRedirectHandler, Request, build_opener

from scoring.alert_store import AlertRow

#: ``alerts.webhook_status`` is this long.
STATUS_LENGTH = 64
#: How much of a receiver's answer is read (and thrown away) so the connection closes cleanly.
READ_LIMIT = 64 * 1024


class _NoRedirects(HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_OPENER = build_opener(_NoRedirects)


def iso_z(at: datetime) -> str:
    """Stored times are naive UTC; receivers get them with the ``Z`` that says so."""
    return at.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def alert_payload(alert: AlertRow) -> dict[str, Any]:
    """What the receiver gets: enough to act without opening the dashboard, and the path to it
    (csat does not know the address it is reached under behind a proxy, so the receiver prefixes it).
    """
    return {
        "event": "alert_raised",
        "id": alert.id,
        "agent": alert.agent,
        "queue": alert.queue,
        "question": alert.question,
        "question_type": alert.question_type,
        "value": alert.value,
        "reason": alert.reason,
        "state": alert.state,
        "answered_at": iso_z(alert.answered_at),
        "call_uniqueid": alert.call_uniqueid,
        "linkedid": alert.linkedid,
        "dashboard_path": f"/alerts/{alert.id}",
    }


def _status(text: str) -> str:
    return text if len(text) <= STATUS_LENGTH else text[: STATUS_LENGTH - 1] + "…"


def post_alert(url: str, payload: Mapping[str, Any], timeout: float) -> str:
    """POST ``payload`` as JSON; returns the HTTP status ("200", "204") or "error: …". Never raises."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        return _status(f"error: not an http(s) URL ({scheme or 'no scheme'})")
    request = Request(
        url,
        data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "csat-alerts/1"},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(READ_LIMIT)
            return str(response.status)
    except HTTPError as exc:
        exc.close()
        return _status(f"error: HTTP {exc.code}")
    except URLError as exc:
        return _status(f"error: {exc.reason}")
    except TimeoutError:
        return _status(f"error: no answer within {timeout:g} s")
    except Exception as exc:  # a webhook must never take the scanner down, whatever the receiver does
        return _status(f"error: {type(exc).__name__}: {exc}")
