"""``python -m ivr`` is the ``csat`` command."""

from ivr.cli import app

app()
