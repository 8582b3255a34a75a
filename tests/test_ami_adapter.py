"""AmiSupervisor against a scripted fake AMI server over real loopback sockets.

Several tests also run the bare asterisk-ami client against the same script. That shows the defect is
real, so the matching adapter test is not passing vacuously.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asterisk.ami import AMIClient

from ivr.ami_adapter import (
    AmiActionError,
    AmiCredentials,
    AmiNotConnected,
    AmiSupervisor,
    AmiTimeout,
    iter_transcript_events,
    validate_action,
)

try:  # tests/ is a plain directory on sys.path today; keep working if it becomes a package
    from fake_ami import RESPONSE_READ_CRASHER, FakeAmi, event_bytes
except ModuleNotFoundError:  # pragma: no cover
    from tests.fake_ami import RESPONSE_READ_CRASHER, FakeAmi, event_bytes

SECRET = "s3cret"
Item = tuple[str, Any]  # ("event", dict) | ("connected", None) | ("disconnected", reason)


class Recorder:
    """Collects callbacks in the order the dispatcher made them."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.items: list[Item] = []
        self.fail_on = fail_on
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    def _add(self, item: Item) -> None:
        with self._cond:
            self.items.append(item)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def on_event(self, event: dict[str, str]) -> None:
        self._add(("event", event))
        if event.get("Event") == self.fail_on:
            raise RuntimeError(f"consumer bug on {self.fail_on}")

    def on_connected(self) -> None:
        self._add(("connected", None))

    def on_disconnected(self, reason: str) -> None:
        self._add(("disconnected", reason))

    def events(self, *, booted: bool = False) -> list[dict[str, str]]:
        """Delivered events; the fake's FullyBooted (sent after every login) is left out unless asked."""
        with self._cond:
            return [
                ev for kind, ev in self.items if kind == "event" and (booted or ev["Event"] != "FullyBooted")
            ]

    def timeline(self) -> list[str]:
        """Compact order of callbacks, e.g. ['connected', 'A', 'disconnected', 'connected', 'B']."""
        with self._cond:
            out = []
            for kind, payload in self.items:
                if kind == "event":
                    name = payload["Event"]
                    if name != "FullyBooted":
                        out.append(payload.get("Uniqueid", name))
                else:
                    out.append(kind)
            return out

    def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def wait_events(self, count: int, timeout: float = 5.0) -> list[dict[str, str]]:
        assert self.wait(lambda: len(self.events()) >= count, timeout), (
            f"only {len(self.events())}/{count} events: {self.timeline()}"
        )
        return self.events()


@pytest.fixture
def fake() -> Iterator[FakeAmi]:
    server = FakeAmi(secret=SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def make_sup(fake: FakeAmi) -> Iterator[Callable[..., tuple[AmiSupervisor, Recorder]]]:
    made: list[AmiSupervisor] = []

    def make(
        *, secret: str = SECRET, recorder: Recorder | None = None, connect: bool = True, **kw: object
    ) -> tuple[AmiSupervisor, Recorder]:
        rec = recorder or Recorder()
        opts: dict[str, object] = {"backoff_initial": 0.05, "backoff_max": 0.5, "action_timeout": 2.0}
        opts.update(kw)
        sup = AmiSupervisor(
            AmiCredentials(fake.host, fake.port, "csat", secret),
            rec.on_event,
            rec.on_connected,
            rec.on_disconnected,
            **opts,  # type: ignore[arg-type]
        )
        made.append(sup)
        sup.start()
        if connect:
            assert sup.wait_connected(5.0), "supervisor did not log in to the fake"
            rec.wait(lambda: ("connected", None) in rec.items)
        return sup, rec

    yield make
    for sup in made:
        sup.stop()


def ev(name: str, uid: str, **headers: str) -> bytes:
    return event_bytes(name, Uniqueid=uid, **headers)


# --- parsing and delivery ---------------------------------------------------------------------------
def test_events_split_across_tcp_writes_are_reassembled_in_order(fake: FakeAmi, make_sup) -> None:
    sup, rec = make_sup()
    first = ev(
        "AgentConnect",
        "1700000001.1",
        Channel="PJSIP/customer-00000001",
        Linkedid="1700000001.1",
        Queue="support",
        MemberName="agent1",
        Interface="PJSIP/agent1",
        HoldTime="0",
        RingTime="0",
    )
    second = (
        b"Event: VarSet\r\nUniqueid: 1700000001.2\r\nChanVariable: SURVEY_FLOW=dialplan\r\n"
        b"ChanVariable: LANG=en\r\nVariable: __SURVEY_QUEUE\r\nValue: support\r\n\r\n"
    )
    third = ev("Hangup", "1700000001.3", Cause="16", **{"Cause-txt": "Normal Clearing"})
    data = first + second + third
    # Cut inside a key, inside a value, between the two CRLFs of a terminator, and right after a packet.
    splits = [3, 40, len(first) - 2, len(first) + 1, len(first) + 30, len(first) + len(second)]
    fake.push(data, splits=splits, pause=0.03)

    events = rec.wait_events(3)
    assert events == [
        {
            "Event": "AgentConnect",
            "Uniqueid": "1700000001.1",
            "Channel": "PJSIP/customer-00000001",
            "Linkedid": "1700000001.1",
            "Queue": "support",
            "MemberName": "agent1",
            "Interface": "PJSIP/agent1",
            "HoldTime": "0",
            "RingTime": "0",
        },
        {
            "Event": "VarSet",
            "Uniqueid": "1700000001.2",
            "ChanVariable(SURVEY_FLOW)": "dialplan",
            "ChanVariable(LANG)": "en",
            "Variable": "__SURVEY_QUEUE",
            "Value": "support",
        },
        {"Event": "Hangup", "Uniqueid": "1700000001.3", "Cause": "16", "Cause-txt": "Normal Clearing"},
    ]
    assert all(isinstance(v, str) for e in events for v in e.values())
    assert rec.threads == {"csat-ami-dispatch"}, "callbacks must run on our dispatcher thread only"
    assert sup.stats.events_received == 4  # the three above plus FullyBooted


def test_garbage_and_unparseable_response_are_dropped_not_fatal(fake: FakeAmi, make_sup) -> None:
    sup, rec = make_sup()
    fake.push(b"\x00\xff\xfe not an AMI packet\r\nat all\r\n\r\n")
    fake.push(RESPONSE_READ_CRASHER)
    fake.push(b"Event:NoSpaceAfterColon\r\n\r\n")
    fake.push(ev("QueueCallerJoin", "U1", Queue="support", Position="1"))

    events = rec.wait_events(1)
    assert events == [{"Event": "QueueCallerJoin", "Uniqueid": "U1", "Queue": "support", "Position": "1"}]
    stats = sup.stats
    assert stats.dropped_packets == 3
    assert stats.reconnects == 0 and len(fake.connections) == 1, "the connection itself must survive"
    assert sup.send_action("Ping")["Ping"] == "Pong"


@pytest.mark.filterwarnings("ignore:notifyAll:DeprecationWarning")  # inside asterisk-ami's FutureResponse
def test_bare_library_listener_dies_on_the_same_malformed_response(fake: FakeAmi) -> None:
    """Control: shows RESPONSE_READ_CRASHER really kills asterisk-ami's listener without our wrapper."""
    got: list[object] = []
    client = AMIClient(address=fake.host, port=fake.port)
    client.add_event_listener(lambda event, source: got.append(event))
    client.login(username="csat", secret=SECRET).response  # noqa: B018 - waits for the login response
    try:
        fake.push(RESPONSE_READ_CRASHER)
        fake.push(ev("QueueCallerJoin", "U1"))
        client._thread.join(2.0)
        assert not client._thread.is_alive()
        assert [e.name for e in got] == ["FullyBooted"]
    finally:
        client.disconnect()


def test_exception_in_on_event_does_not_stop_later_events(fake: FakeAmi, make_sup, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="csat.ami")
    sup, rec = make_sup(recorder=Recorder(fail_on="Boom"))
    fake.push(ev("Boom", "U1") + ev("Hangup", "U2") + ev("Hangup", "U3"))

    assert [e["Uniqueid"] for e in rec.wait_events(3)] == ["U1", "U2", "U3"]
    assert sup.stats.callback_errors == 1
    assert sup.connected and sup.stats.reconnects == 0
    errors = [r for r in caplog.records if "on_event callback raised" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info is not None


def test_event_filter_drops_unwanted_events_before_delivery(fake: FakeAmi, make_sup) -> None:
    sup, rec = make_sup(events={"AgentConnect", "Hangup"})
    fake.push(ev("Newchannel", "U1") + ev("AgentConnect", "U1") + ev("VarSet", "U1") + ev("Hangup", "U1"))
    assert [e["Event"] for e in rec.wait_events(2, timeout=3)] == ["AgentConnect", "Hangup"]
    assert sup.stats.events_filtered == 3  # FullyBooted, Newchannel, VarSet
    assert rec.events(booted=True) == rec.events()


# --- liveness and reconnects ---------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:notifyAll:DeprecationWarning")
def test_idle_connection_survives_beyond_library_read_timeout(fake: FakeAmi, make_sup) -> None:
    """No byte in either direction for 4 s (> asterisk-ami's 3 s socket timeout), then an event arrives."""
    sup, rec = make_sup(ping_interval=60.0)
    control_events: list[object] = []
    control = AMIClient(address=fake.host, port=fake.port)  # the library as shipped, same server
    control.add_event_listener(lambda event, source: control_events.append(event.name))
    control.login(username="csat", secret=SECRET).response  # noqa: B018
    assert fake.wait_logins(2)
    ours, theirs = fake.connections
    try:
        time.sleep(4.0)  # the point of the test: total silence longer than the library's timeout
        ours.push(ev("AgentComplete", "U-idle", Reason="agent"))
        theirs.push(ev("AgentComplete", "U-idle", Reason="agent"))

        assert rec.wait_events(1)[0] == {"Event": "AgentComplete", "Uniqueid": "U-idle", "Reason": "agent"}
        assert sup.stats.reconnects == 0 and len(fake.connections) == 2
        assert fake.action_names() == ["Login", "Login"], "the idle period must have had no traffic at all"
        # The bare library died in that silence: its listener thread is gone and it never saw the event.
        assert not control._thread.is_alive()
        assert "AgentComplete" not in control_events
    finally:
        control.disconnect()


def test_silent_server_is_detected_by_ping_and_reconnected(fake: FakeAmi, make_sup) -> None:
    sup, rec = make_sup(ping_interval=0.3, action_timeout=0.4)
    fake.push(ev("Hangup", "before"))
    rec.wait_events(1)
    fake.silence()  # TCP stays open, the server never answers again on this connection

    assert fake.wait_logins(2, timeout=5.0), "no re-login after the server went silent"
    assert sup.wait_connected(2.0)
    fake.push(ev("Hangup", "after"))
    rec.wait_events(2)
    assert rec.timeline() == ["connected", "before", "disconnected", "connected", "after"]
    reason = next(p for k, p in rec.items if k == "disconnected")
    assert "Ping" in str(reason) and "silent" in str(reason)
    assert sup.stats.reconnects == 1
    assert fake.action_names().count("Ping") >= 1


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_dropped_socket_reconnects_and_events_flow_again(fake: FakeAmi, make_sup, reset: bool) -> None:
    sup, rec = make_sup(ping_interval=30.0)
    fake.push(ev("AgentConnect", "A1"))
    rec.wait_events(1)
    fake.drop_all(reset=reset)

    assert fake.wait_logins(2, timeout=5.0)
    assert sup.wait_connected(2.0)
    fake.push(ev("AgentComplete", "A2"))
    rec.wait_events(2)
    assert rec.timeline() == ["connected", "A1", "disconnected", "connected", "A2"]
    reason = str(next(p for k, p in rec.items if k == "disconnected"))
    assert ("reset" in reason) == reset, reason  # an RST surfaces as a socket error, a FIN as a close
    assert sup.stats.reconnects == 1
    assert len(fake.connections) == 2
    assert sup.send_action("Ping")["Response"] == "Success"


def test_server_restart_on_same_port_relogs_in(fake: FakeAmi, make_sup) -> None:
    sup, rec = make_sup(ping_interval=30.0)
    port = fake.port
    fake.stop()
    assert rec.wait(lambda: "disconnected" in rec.timeline(), 3.0)
    with pytest.raises(AmiNotConnected):
        sup.send_action("Ping")
    assert rec.wait(lambda: sup.stats.login_failures >= 2, 3.0), "should keep retrying while down"

    fake.start()
    assert fake.port == port
    assert fake.wait_logins(2, timeout=5.0)
    assert sup.wait_connected(2.0)
    fake.push(ev("Hangup", "after-restart"))
    rec.wait_events(1)
    assert rec.timeline() == ["connected", "disconnected", "connected", "after-restart"]
    assert sup.stats.reconnects == 1


def test_in_flight_action_fails_fast_when_connection_drops(fake: FakeAmi, make_sup) -> None:
    sup, _ = make_sup(action_timeout=5.0)
    fake.handlers["csatnever"] = lambda conn, fields: None  # never answered
    errors: list[BaseException] = []

    def call() -> None:
        try:
            sup.send_action("CsatNever")
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    t = threading.Thread(target=call)
    started = time.monotonic()
    t.start()
    assert fake.wait_for(lambda: "CsatNever" in fake.action_names(), 2.0)
    fake.drop_all()
    t.join(3.0)
    assert len(errors) == 1 and isinstance(errors[0], AmiNotConnected)
    assert time.monotonic() - started < 2.0, "must not wait for the 5 s action timeout"


# --- actions ----------------------------------------------------------------------------------------
def test_crlf_injection_is_refused_and_nothing_reaches_the_server(fake: FakeAmi, make_sup) -> None:
    sup, _ = make_sup()
    attacks: list[tuple[str, dict[str, object]]] = [
        (
            "Setvar",
            {
                "Channel": "PJSIP/x",
                "Variable": "A",
                "Value": "x\r\n\r\nAction: Originate\r\nChannel: Local/1",
            },
        ),
        ("Setvar", {"Channel": "PJSIP/x\nAction: Originate", "Variable": "A", "Value": "1"}),
        ("Setvar", {"Channel\r\nAction: Originate\r\nX": "1"}),
        ("Setvar", {"Bad:Key": "1"}),
        ("Setvar", {"": "1"}),
        ("Setvar\r\n\r\nAction: Originate", {}),
    ]
    for name, fields in attacks:
        with pytest.raises(AmiActionError):
            sup.send_action(name, **fields)
    assert sup.send_action("Ping")["Ping"] == "Pong"  # a later action on the same stream: in sync
    assert fake.action_names() == ["Login", "Ping"]
    assert not any(b"Originate" in raw or b"Setvar" in raw for raw in fake.raw_actions)


@pytest.mark.parametrize(
    ("name", "fields", "needle"),
    [
        ("Setvar", {"Value": "a\rb"}, "CR/LF"),
        ("Setvar", {"Value": "a\nb"}, "CR/LF"),
        ("Setvar", {"Value": "a\x00b"}, "CR/LF"),
        ("Set\nvar", {}, "CR/LF"),
        ("", {}, "non-empty"),
        ("Set var", {}, "printable"),
        ("Setvar", {"": "x"}, "non-empty"),
        ("Setvar", {"A:B": "x"}, "':'"),
        ("Setvar", {"A B": "x"}, "printable"),
        ("Setvar", {"Value": None}, "scalar"),
        ("Setvar", {"Value": ["a", "b"]}, "scalar"),
        ("Setvar", {"ActionID": "mine"}, "ActionID"),
        ("Setvar", {"Action": "Originate"}, "Action"),
        ("Setvar", {"Channel": "a", "channel": "b"}, "twice"),
    ],
)
def test_validate_action_rejects(name: str, fields: dict[str, object], needle: str) -> None:
    with pytest.raises(AmiActionError, match=needle):
        validate_action(name, fields)


def test_validate_action_accepts_and_stringifies() -> None:
    assert validate_action("Setvar", {"Channel": "PJSIP/customer-01", "Priority": 1, "Async": True}) == {
        "Channel": "PJSIP/customer-01",
        "Priority": "1",
        "Async": "True",
    }


def test_error_messages_never_contain_the_value() -> None:
    with pytest.raises(AmiActionError) as info:
        validate_action("Login", {"Username": "csat", "Secret": "hunter2\r\n"})
    assert "hunter2" not in str(info.value) and "Secret" in str(info.value)


def test_concurrent_send_action_from_8_threads_matches_every_response(fake: FakeAmi, make_sup) -> None:
    sup, _ = make_sup()
    per_thread = 25
    results: dict[str, dict[str, str]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        rng = random.Random(t)
        barrier.wait()
        for i in range(per_thread):
            token = f"t{t}-{i}"
            try:
                # Random reply delays make the fake answer out of order, so only ActionID can match them.
                resp = sup.send_action("CsatEcho", Token=token, DelayMs=rng.randint(0, 15))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return
            with lock:
                results[token] = resp

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(20)
    assert not errors
    assert len(results) == 8 * per_thread
    for token, resp in results.items():
        assert resp["Response"] == "Success"
        assert resp["Echo-Token"] == token
    # Every action arrived whole and exactly once (no interleaved or torn writes).
    echoes = [a for a in fake.actions if a.get("Action") == "CsatEcho"]
    assert sorted(a["Token"] for a in echoes) == sorted(results)
    assert len({a["ActionID"] for a in echoes}) == len(echoes)
    # The fake really answered out of order, so positional (FIFO) matching would have failed.
    assert fake.replied_ids != [a["ActionID"] for a in echoes]


def test_action_timeout_and_lifecycle_actions(fake: FakeAmi, make_sup) -> None:
    sup, _ = make_sup(action_timeout=0.3)
    fake.handlers["csatnever"] = lambda conn, fields: None
    started = time.monotonic()
    with pytest.raises(AmiTimeout):
        sup.send_action("CsatNever")
    assert 0.25 <= time.monotonic() - started < 1.5
    assert sup.connected and sup.send_action("Ping")["Ping"] == "Pong"  # a timeout is not a disconnect
    with pytest.raises(AmiActionError):
        sup.send_action("Logoff")
    with pytest.raises(AmiActionError):
        sup.send_action("login", Username="x", Secret="y")


def test_send_action_before_start_is_not_connected() -> None:
    sup = AmiSupervisor(AmiCredentials("127.0.0.1", 9, "csat", "x"), lambda e: None)
    assert not sup.connected
    with pytest.raises(AmiNotConnected):
        sup.send_action("Ping")


# --- login failures and shutdown -------------------------------------------------------------------------
def test_bad_secret_never_connects_and_logs_clearly(fake: FakeAmi, make_sup, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="csat.ami")
    sup, rec = make_sup(secret="wrong-secret-value", connect=False, backoff_initial=0.3, backoff_max=1.0)

    def login_errors() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "login" in r.getMessage() and r.levelno == logging.ERROR]

    assert not sup.wait_connected(0.2)
    deadline = time.monotonic() + 3.0
    while len(login_errors()) < 2 and time.monotonic() < deadline:  # two attempts, 0.3 s of backoff apart
        time.sleep(0.02)
    sup.stop()  # the next attempt is 0.6 s away, so none is in flight: log lines and attempts must agree

    failures = login_errors()
    assert len(failures) >= 2
    assert len(failures) == fake.bad_logins, "exactly one error line per attempt"
    first = failures[0]
    assert "Authentication failed" in first.getMessage()
    assert f"127.0.0.1:{fake.port}" in first.getMessage() and "'csat'" in first.getMessage()
    assert (first.host, first.port, first.user) == ("127.0.0.1", fake.port, "csat")
    for record in caplog.records:
        assert "wrong-secret-value" not in record.getMessage()
        assert "wrong-secret-value" not in repr(record.__dict__)
    assert "wrong-secret-value" not in repr(sup.credentials)
    assert rec.items == [] and fake.logins == 0
    assert sup.stats.login_failures == fake.bad_logins


def test_non_asterisk_banner_is_a_clean_login_failure(make_sup, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="csat.ami")
    with FakeAmi(secret=SECRET, banner=b"SSH-2.0-OpenSSH_9.2\r\n") as bogus:
        rec = Recorder()
        sup = AmiSupervisor(
            AmiCredentials(bogus.host, bogus.port, "csat", SECRET), rec.on_event, backoff_initial=0.05
        )
        sup.start()
        try:
            assert not sup.wait_connected(0.5)
            assert any("banner" in r.getMessage() for r in caplog.records)
        finally:
            sup.stop()


def test_stop_logs_off_and_joins_within_two_seconds(fake: FakeAmi, make_sup) -> None:
    sup, rec = make_sup()
    started = time.monotonic()
    sup.stop()
    assert time.monotonic() - started < 2.0
    assert fake.action_names()[-1] == "Logoff"
    assert rec.timeline() == ["connected", "disconnected"]
    assert not sup.connected
    names = {t.name for t in threading.enumerate()}
    assert not names & {"csat-ami-supervisor", "csat-ami-dispatch"}
    assert not any(n.startswith("csat-ami-listener") for n in names)


def test_stop_is_prompt_even_when_server_is_silent(fake: FakeAmi, make_sup) -> None:
    sup, _ = make_sup(ping_interval=0.1, action_timeout=5.0)
    fake.silence()
    assert fake.wait_for(lambda: "Ping" in fake.action_names(), 2.0)  # a 5 s Ping wait is in progress
    started = time.monotonic()
    sup.stop()
    assert time.monotonic() - started < 2.5


# --- transcripts -----------------------------------------------------------------------------------------
def test_transcript_is_recorded_byte_exact_and_replays_to_the_same_events(
    fake: FakeAmi, make_sup, tmp_path: Path
) -> None:
    path = tmp_path / "rec" / "session.ami"
    sup, rec = make_sup(transcript_path=path, ping_interval=30.0)
    fake.push(
        ev("AgentConnect", "T1", Queue="support")
        + b"garbage\r\n\r\n"
        + ev("VarSet", "T1", ChanVariable="A=1"),
        splits=[10, 70],
    )
    rec.wait_events(2)
    fake.drop_all()  # a reconnect writes a second banner into the same file
    assert fake.wait_logins(2)
    fake.push(ev("Hangup", "T2", Cause="16"))
    rec.wait_events(3)
    sup.stop()

    data = path.read_bytes()
    assert data.startswith(b"Asterisk Call Manager/5.0.1\r\nResponse: Success\r\n")
    assert data.count(b"Asterisk Call Manager/5.0.1\r\n") == 2
    assert data.count(b"\n") == data.count(b"\r\n"), "no newline translation"
    assert data.endswith(b"\r\n\r\n")
    assert b"garbage\r\n\r\n" in data
    replayed = list(iter_transcript_events(data))
    assert replayed == rec.events(booted=True)
    assert [e["Event"] for e in replayed] == [
        "FullyBooted",
        "AgentConnect",
        "VarSet",
        "FullyBooted",
        "Hangup",
    ]
    assert replayed[2]["ChanVariable(A)"] == "1"


def test_iter_transcript_events_ignores_an_unterminated_tail() -> None:
    data = b"Asterisk Call Manager/5.0.1\r\n" + event_bytes("Hangup", Uniqueid="1") + b"Event: Hangup\r\nUniq"
    assert list(iter_transcript_events(data)) == [{"Event": "Hangup", "Uniqueid": "1"}]
