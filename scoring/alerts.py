"""Low-score alerts as pure rules: which answer raises one, and how a supervisor works it.

The workflow is data (:data:`TRANSITIONS`), so the pages, the API and the store all ask it the same
question and no route can invent a move of its own:

- open → acknowledged (someone is on it) or → closed (nothing to do, e.g. a mis-keyed rating);
- acknowledged → called_back (the customer was called) or → closed;
- called_back → closed;
- closed → open (reopen).

Reopening (closed → open) is allowed on purpose: a supervisor who closed the wrong alert, or a customer
who calls again about the same bad call, must not need database access to undo it, and nothing is lost
by allowing it because every move is kept in the history with who made it and why. A reopened alert
starts over from ``open``. Staying put (open → open) is not a move: it is refused so that a second
click, or a second supervisor, can never record an acknowledgement twice.
"""

from __future__ import annotations

from collections.abc import Mapping

from ivr.models import AlertState
from ivr.settings import AlertSettings

#: NPS 0–6 are detractors (Reichheld's definition, the same one the NPS figure uses).
NPS_DETRACTOR_MAX = 6
#: yesno answers are stored 1 = yes, 0 = no; an FCR "no" means the problem was not solved.
YESNO_NO = 0
#: The question types a rule can fire on; comments carry no value.
RULE_TYPES = frozenset({"csat", "ces", "nps", "yesno"})
#: The ``alert_events.note`` column is this long; the web forms and the API say so up front.
MAX_NOTE = 2000

REASON_LABELS: Mapping[str, str] = {
    "low_csat": "Low CSAT",
    "low_ces": "Low CES (hard to get help)",
    "nps_detractor": "NPS detractor",
    "fcr_no": "Problem not solved (FCR no)",
}

STATE_LABELS: Mapping[str, str] = {
    AlertState.OPEN: "Open",
    AlertState.ACKNOWLEDGED: "Acknowledged",
    AlertState.CALLED_BACK: "Called back",
    AlertState.CLOSED: "Closed",
}

#: What the button that moves an alert *to* a state says.
ACTION_LABELS: Mapping[str, str] = {
    AlertState.OPEN: "Reopen",
    AlertState.ACKNOWLEDGED: "Acknowledge",
    AlertState.CALLED_BACK: "Called back",
    AlertState.CLOSED: "Close",
}

#: state → the states it may move to, in the order the page offers them.
TRANSITIONS: Mapping[AlertState, tuple[AlertState, ...]] = {
    AlertState.OPEN: (AlertState.ACKNOWLEDGED, AlertState.CLOSED),
    AlertState.ACKNOWLEDGED: (AlertState.CALLED_BACK, AlertState.CLOSED),
    AlertState.CALLED_BACK: (AlertState.CLOSED,),
    AlertState.CLOSED: (AlertState.OPEN,),
}


class AlertTransitionError(ValueError):
    """A move the workflow does not allow; the message says what the alert can do instead."""


class NoteError(ValueError):
    """A note the history cannot keep (too long, or characters a database refuses)."""


def alert_reason(question_type: str, value: int | None, rules: AlertSettings) -> str | None:
    """Why this answer needs a supervisor, or None. ``rules.enabled`` is the scanner's business: the
    rule itself stays answerable so that settings pages and tests can ask "would this alert?".
    """
    if value is None:
        return None
    if question_type == "csat" and value <= rules.max_csat:
        return "low_csat"
    if question_type == "ces" and rules.max_ces is not None and value <= rules.max_ces:
        return "low_ces"
    if question_type == "nps" and rules.nps_detractors and value <= NPS_DETRACTOR_MAX:
        return "nps_detractor"
    if question_type == "yesno" and rules.fcr_no and value == YESNO_NO:
        return "fcr_no"
    return None


def _state(name: str) -> AlertState:
    try:
        return AlertState(name)
    except ValueError:
        known = ", ".join(s.value for s in AlertState)
        raise AlertTransitionError(f"unknown alert state {name!r}; states are: {known}") from None


def next_states(state: str) -> tuple[str, ...]:
    """Where an alert in ``state`` may go (empty for a state this version does not know)."""
    try:
        return tuple(s.value for s in TRANSITIONS[AlertState(state)])
    except ValueError:
        return ()


def transition(state: str, target: str) -> str:
    """``target`` if the workflow allows moving there from ``state``; otherwise AlertTransitionError."""
    current, wanted = _state(state), _state(target)
    allowed = TRANSITIONS[current]
    if wanted in allowed:
        return wanted.value
    options = " or ".join(s.value for s in allowed)
    if wanted == current:
        raise AlertTransitionError(f"the alert is already {current.value}; from here it can go to {options}")
    raise AlertTransitionError(
        f"an alert cannot go from {current.value} to {wanted.value};"
        f" from {current.value} it can go to {options}"
    )


def clean_note(note: str | None) -> str | None:
    """The note as the history keeps it: trimmed, line breaks as ``\\n``, None when empty.

    NUL and unpaired surrogates are refused here because PostgreSQL rejects them with an error,
    which would otherwise surface as a server error instead of a message the user can act on.
    """
    if note is None:
        return None
    text = note.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return None
    if len(text) > MAX_NOTE:
        raise NoteError(f"a note can be at most {MAX_NOTE} characters (this one has {len(text)})")
    if "\x00" in text:
        raise NoteError("a note cannot contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError("a note must be valid text (it contains an unpaired surrogate)") from None
    return text
