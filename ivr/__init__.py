"""csat telephony side: AMI listener, call tracking, the survey leg and the CLI."""
