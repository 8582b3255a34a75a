"""csat scoring: turns stored answers into the figures supervisors and trainers act on."""
