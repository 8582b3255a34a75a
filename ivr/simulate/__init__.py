"""Simulated SIP phones (SIPp) for the csat demo and the telephony tests.

* :mod:`ivr.simulate.pcaps` - RFC 4733 key-press pcaps that can be replayed many times per call.
* :mod:`ivr.simulate.scenarios` - generated SIPp XML for the customer (UAC) and agents (UAS).
* :mod:`ivr.simulate.sipp_runner` - process management and per-call results.
"""

from ivr.simulate.sipp_runner import AgentPhones, CallCase, CallResult, SippError, run_calls, sipp_available

__all__ = ["AgentPhones", "CallCase", "CallResult", "SippError", "run_calls", "sipp_available"]
