"""AMI ingest benchmark: csat's real listener path vs three baselines, on recorded Asterisk 16 traffic.

Usage: .venv/bin/python bench/ami_ingest.py [--transcript FILE ...] [--events N] [--runs N]
                                            [--consumer module:function]

Payload: by default the ``Event:`` packets of the recorded transcripts in ``tests/fixtures/*.ami``
(scripts/record_transcripts.py: what csat's AMI connection received from a real Asterisk 16 during real
calls), repeated up to ``--events``. Without fixtures a synthetic Asterisk-16-shaped stream is used.

A loopback AMI server runs in a separate process, so it does not share the GIL with the clients. For
each connection it sends the banner and answers Login, then sends the event payload as fast as the
socket accepts it. Pings are answered too. Every client logs in, so the server treats them the same way.

Measured, interleaved run by run (the median of each is reported, so drift on the machine hits all):

* baselines: (B1) raw asyncio ``read(64 KiB)`` + split on ``\r\n\r\n`` + count; (B2) the same plus
  decoding each event into a dict (the least any consumer needs); (B3) bare asterisk-ami ``AMIClient`` as
  shipped (callback on its listener thread).
* ours: the listener path of ``csat serve`` without the database: ``AmiSupervisor`` delivering to
  ``CallTracker().feed`` on the dispatcher thread, (L1) with the production ``events=TRACKED_EVENTS``
  filter and (L2) without it. (A0) ``AmiSupervisor`` with a no-op consumer shows the adapter alone, and
  ``--consumer`` adds one more run with your own function (unfiltered).

Rate = wire events/s: the events the server sent between the first and the last event the consumer saw,
divided by the time between those two deliveries. With a filter the consumer sees fewer events, but every
one on the wire was still read and looked at, so the same formula applies.
Goal: the listener (L1) >= 0.5x the raw parse. Both B1 and B2 are reported: B1 is pure C-speed splitting,
and TELEPHONY.md section 11's "raw asyncio" figures (150-170k/s at ~470 B/event) are of the order of B2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import multiprocessing
import random
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr.ami_adapter import AmiCredentials, AmiSupervisor  # noqa: E402
from ivr.call_tracker import TRACKED_EVENTS, CallTracker  # noqa: E402

BANNER = b"Asterisk Call Manager/5.0.1\r\n"
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
RUNS = 5
RUN_TIMEOUT_S = 25.0
DEFAULT_EVENTS = 150_000


# -- payload ---------------------------------------------------------------------------------------
def event_packs_from_transcripts(paths: list[Path]) -> list[bytes]:
    """Every ``Event:`` packet of the transcripts, byte-exact, with its terminator."""
    packs: list[bytes] = []
    for path in paths:
        for raw in path.read_bytes().split(b"\r\n\r\n")[:-1]:
            while raw.startswith(b"Asterisk Call Manager/"):
                raw = raw.partition(b"\r\n")[2]
            if raw.startswith(b"Event: "):
                packs.append(raw + b"\r\n\r\n")
    return packs


def _channel(
    prefix: str, n: int, linkedid: str, channel: str, unique: str, **over: str
) -> list[tuple[str, str]]:
    """The channel snapshot Asterisk 16 puts in most events (``Dest`` prefix for the second channel)."""
    fields = {
        "Channel": channel,
        "ChannelState": "6",
        "ChannelStateDesc": "Up",
        "CallerIDNum": f"+4420{n:07d}",
        "CallerIDName": f"case-{n:04d}",
        "ConnectedLineNum": "<unknown>",
        "ConnectedLineName": "<unknown>",
        "Language": "en",
        "AccountCode": "",
        "Context": "from-customer",
        "Exten": "100",
        "Priority": "1",
        "Uniqueid": unique,
        "Linkedid": linkedid,
    }
    fields.update(over)
    return [(prefix + k, v) for k, v in fields.items()]


def _pack(name: str, ts: float, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"Event: {name}", "Privilege: agent,all", f"Timestamp: {ts:.6f}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def synthetic_packs(calls: int = 200, seed: int = 16) -> list[bytes]:
    """Asterisk-16-shaped events for one queue call each: 15-25 headers, ~400-600 bytes per event."""
    rng = random.Random(seed)
    packs: list[bytes] = []
    base_ts = 1_700_000_000.0
    for n in range(calls):
        ts = base_ts + n
        uid = f"{ts:.1f}"
        agent = f"agent{rng.randint(1, 3)}"
        caller = _channel("", n, uid, f"PJSIP/customer-{n:08x}", uid)
        dest = _channel(
            "Dest", n, uid, f"PJSIP/{agent}-{n + 1:08x}", f"{ts + 0.5:.1f}", Context="from-agent", Exten="s"
        )
        member = [("Queue", "support"), ("Interface", f"PJSIP/{agent}"), ("MemberName", agent)]
        down = _channel("", n, uid, f"PJSIP/customer-{n:08x}", uid, ChannelState="0", ChannelStateDesc="Down")
        in_survey = _channel("", n, uid, f"PJSIP/customer-{n:08x}", uid, Context="survey", Exten="s")
        packs += [
            _pack("Newchannel", ts, down),
            _pack(
                "QueueCallerJoin",
                ts + 0.501,
                caller + [("Queue", "support"), ("Position", "1"), ("Count", "1")],
            ),
            _pack("AgentCalled", ts + 0.502, caller + dest + member),
            _pack(
                "AgentConnect", ts + 0.811, caller + dest + member + [("HoldTime", "0"), ("RingTime", "0")]
            ),
            _pack(
                "BridgeEnter",
                ts + 0.812,
                caller
                + [
                    ("BridgeUniqueid", f"b-{n:06d}"),
                    ("BridgeType", "basic"),
                    ("BridgeTechnology", "simple_bridge"),
                ],
            ),
            _pack(
                "AgentComplete",
                ts + 4.814,
                caller + member + [("HoldTime", "0"), ("TalkTime", "4"), ("Reason", "agent")],
            ),
            _pack("Hangup", ts + 6.738, in_survey + [("Cause", "16"), ("Cause-txt", "Normal Clearing")]),
        ]
    return packs


def build_payload(packs: list[bytes], events: int) -> tuple[bytes, list[str]]:
    """The payload bytes and the event name of every packet in it, in order."""
    reps, rest = divmod(events, len(packs))
    names = [p[7 : p.index(b"\r\n")].decode() for p in packs]
    return b"".join(packs) * reps + b"".join(packs[:rest]), names * reps + names[:rest]


# -- server (own process) -------------------------------------------------------------------------
def serve(listener: socket.socket, payload: bytes) -> None:
    """Answer every connection: banner, Login -> Success, then the payload; keep answering Ping/Logoff."""
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve_one, args=(conn, payload), daemon=True).start()


def _serve_one(conn: socket.socket, payload: bytes) -> None:
    lock = threading.Lock()
    buf = b""
    blasting = False
    try:
        with lock:
            conn.sendall(BANNER)
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                block, buf = buf.split(b"\r\n\r\n", 1)
                fields = dict(line.split(": ", 1) for line in block.decode().split("\r\n") if ": " in line)
                action = fields.get("Action", "").lower()
                aid = fields.get("ActionID", "")
                if action == "login":
                    reply = (
                        f"Response: Success\r\nActionID: {aid}\r\nMessage: Authentication accepted\r\n\r\n"
                    )
                elif action == "logoff":
                    reply = (
                        f"Response: Goodbye\r\nActionID: {aid}\r\nMessage: Thanks for all the fish.\r\n\r\n"
                    )
                else:
                    reply = f"Response: Success\r\nActionID: {aid}\r\nPing: Pong\r\n\r\n"
                with lock:
                    conn.sendall(reply.encode())
                if action == "login" and not blasting:
                    blasting = True
                    threading.Thread(target=_blast, args=(conn, lock, payload), daemon=True).start()
                if action == "logoff":
                    return
    except OSError:
        return
    finally:
        conn.close()


def _blast(conn: socket.socket, lock: threading.Lock, payload: bytes) -> None:
    view = memoryview(payload)
    step = 256 * 1024
    try:
        for off in range(0, len(view), step):
            with lock:
                conn.sendall(view[off : off + step])
    except OSError:
        pass


# -- clients --------------------------------------------------------------------------------------------
def run_supervisor(
    port: int,
    names: list[str],
    consumer: Callable[[dict[str, str]], object],
    events: Collection[str] | None = None,
) -> float:
    """AmiSupervisor (asterisk-ami + our wrapper) delivering to ``consumer``, optionally pre-filtered."""
    seen = [i for i, name in enumerate(names) if events is None or name in events]
    if len(seen) < 2:
        raise SystemExit("fewer than two events pass the filter: nothing to time")
    expected, span = len(seen), seen[-1] - seen[0]
    done = threading.Event()
    first = last = 0.0
    count = 0

    def on_event(event: dict[str, str]) -> None:
        nonlocal first, last, count
        consumer(event)
        count += 1
        if count == 1:
            first = time.perf_counter()
        if count == expected:
            last = time.perf_counter()
            done.set()

    sup = AmiSupervisor(
        AmiCredentials("127.0.0.1", port, "bench", "bench"), on_event, ping_interval=30.0, events=events
    )
    sup.start()
    try:
        if not done.wait(RUN_TIMEOUT_S):
            raise SystemExit(f"AmiSupervisor run timed out: {count}/{expected} events")
    finally:
        sup.stop()
    return span / (last - first)


def run_listener(port: int, names: list[str], filtered: bool) -> float:
    """csat's listener path minus the database: a fresh CallTracker fed by AmiSupervisor."""
    tracker = CallTracker()
    return run_supervisor(port, names, tracker.feed, TRACKED_EVENTS if filtered else None)


async def _raw_async(port: int, expected: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"Action: Login\r\nUsername: bench\r\nSecret: bench\r\nActionID: 1\r\n\r\n")
    await writer.drain()
    buf = b""
    count = 0
    first = 0.0
    while count < expected:
        data = await reader.read(65536)
        if not data:
            raise SystemExit("raw asyncio run: server closed early")
        buf += data
        packs = buf.split(b"\r\n\r\n")
        buf = packs.pop()
        for pack in packs:
            if pack.startswith(b"Event:"):
                count += 1
                if count == 1:
                    first = time.perf_counter()
    last = time.perf_counter()
    writer.close()
    return (expected - 1) / (last - first)


def run_raw(port: int, expected: int) -> float:
    return asyncio.run(asyncio.wait_for(_raw_async(port, expected), RUN_TIMEOUT_S))


async def _raw_dict_async(port: int, expected: int) -> float:
    """Reference: the same raw read, plus decoding each event into a dict (what any real consumer needs)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"Action: Login\r\nUsername: bench\r\nSecret: bench\r\nActionID: 1\r\n\r\n")
    await writer.drain()
    buf = b""
    count = 0
    first = 0.0
    while count < expected:
        data = await reader.read(65536)
        if not data:
            raise SystemExit("raw dict run: server closed early")
        buf += data
        packs = buf.split(b"\r\n\r\n")
        buf = packs.pop()
        for pack in packs:
            if pack.startswith(b"Event:"):
                event = {}
                for line in pack.decode("utf-8", "replace").split("\r\n"):
                    key, _, value = line.partition(": ")
                    event[key] = value
                count += 1
                if count == 1:
                    first = time.perf_counter()
    last = time.perf_counter()
    writer.close()
    return (expected - 1) / (last - first)


def run_raw_dict(port: int, expected: int) -> float:
    return asyncio.run(asyncio.wait_for(_raw_dict_async(port, expected), RUN_TIMEOUT_S))


def run_bare_library(port: int, expected: int) -> float:
    """Reference: asterisk-ami's AMIClient as shipped (1 KiB reads, callback on its listener thread)."""
    from asterisk.ami import AMIClient

    done = threading.Event()
    first = last = 0.0
    count = 0

    def on_event(event: object, source: object) -> None:
        nonlocal first, last, count
        count += 1
        if count == 1:
            first = time.perf_counter()
        if count == expected:
            last = time.perf_counter()
            done.set()

    client = AMIClient(address="127.0.0.1", port=port)
    client.add_event_listener(on_event)
    client.login(username="bench", secret="bench")
    try:
        if not done.wait(RUN_TIMEOUT_S):
            raise SystemExit(f"bare asterisk-ami run timed out: {count}/{expected} events")
    finally:
        # The library's disconnect() only close()s, which does not wake its listener's recv() (up to 3 s).
        with contextlib.suppress(OSError):
            client._socket.shutdown(socket.SHUT_RDWR)
        client.disconnect()
    return (expected - 1) / (last - first)


def load_consumer(spec: str) -> Callable[[dict[str, str]], object]:
    module_name, _, attr = spec.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise SystemExit(f"--consumer {spec}: not callable")
    return obj  # type: ignore[return-value]


@dataclass(frozen=True)
class Client:
    key: str
    label: str
    run: Callable[[int, list[str]], float]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transcript", type=Path, action="append", help="AMI transcript file (repeatable)")
    parser.add_argument(
        "--events", type=int, default=DEFAULT_EVENTS, help=f"events per run ({DEFAULT_EVENTS})"
    )
    parser.add_argument("--runs", type=int, default=RUNS, help=f"interleaved runs per client ({RUNS})")
    parser.add_argument(
        "--consumer", help="module:function: one more AmiSupervisor run feeding it every event"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    paths = args.transcript or sorted(FIXTURES.glob("*.ami"))
    packs = event_packs_from_transcripts(paths) if paths else []
    if packs:
        files = ", ".join(p.name for p in paths)
        print(f"source: {len(packs)} recorded events from {len(paths)} transcript file(s): {files}")
    else:
        if args.transcript:
            raise SystemExit("no Event packets found in the given transcript(s)")
        packs = synthetic_packs()
        print(
            "source: no tests/fixtures/*.ami transcripts found; using a SYNTHETIC Asterisk-16-like stream "
            f"({len(packs)} events: Newchannel, QueueCallerJoin, AgentCalled, AgentConnect, BridgeEnter, "
            "AgentComplete, Hangup)"
        )
    payload, names = build_payload(packs, args.events)
    size = len(payload)
    tracked = sum(1 for n in names if n in TRACKED_EVENTS)
    print(
        f"payload: {args.events:,} events, {size / 1e6:.1f} MB, {size / args.events:.0f} B/event; "
        f"{tracked / args.events:.1%} of them are TRACKED_EVENTS"
    )

    clients = [
        Client("B1", "raw asyncio: read 64 KiB + split + count", lambda p, n: run_raw(p, len(n))),
        Client("B2", "raw asyncio: split + decode to dict", lambda p, n: run_raw_dict(p, len(n))),
        Client(
            "B3",
            f"bare asterisk-ami {metadata.version('asterisk-ami')} AMIClient",
            lambda p, n: run_bare_library(p, len(n)),
        ),
        Client(
            "L1",
            "listener: AmiSupervisor + CallTracker, events=TRACKED_EVENTS",
            lambda p, n: run_listener(p, n, True),
        ),
        Client(
            "L2", "listener: AmiSupervisor + CallTracker, no filter", lambda p, n: run_listener(p, n, False)
        ),
        Client(
            "A0", "AmiSupervisor alone: no-op consumer, no filter", lambda p, n: run_supervisor(p, n, _noop)
        ),
    ]
    if args.consumer:
        consumer = load_consumer(args.consumer)
        clients.append(
            Client(
                "C1",
                f"AmiSupervisor + {args.consumer}, no filter",
                lambda p, n: run_supervisor(p, n, consumer),
            )
        )

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = multiprocessing.get_context("fork").Process(target=serve, args=(listener, payload), daemon=True)
    server.start()
    listener.close()
    del payload
    rates: dict[str, list[float]] = {c.key: [] for c in clients}
    try:
        for run in range(1, args.runs + 1):
            for client in clients:
                rates[client.key].append(client.run(port, names))
            print(
                f"run {run}: " + " | ".join(f"{c.key} {rates[c.key][-1]:,.0f}/s" for c in clients), flush=True
            )
    finally:
        server.terminate()
        server.join(2)
    med = {key: statistics.median(values) for key, values in rates.items()}

    print(f"\nmedian of {args.runs} interleaved runs, wire events/s:")
    for c in clients:
        print(f"  {c.key}  {c.label:<64} {med[c.key]:>10,.0f}")
    baselines = [c for c in clients if c.key.startswith("B")]
    print("\nratios (ours / baseline):")
    print(f"  {'':<4}" + "".join(f"{'vs ' + b.key:>10}" for b in baselines))
    for c in clients:
        if not c.key.startswith("B"):
            print(f"  {c.key:<4}" + "".join(f"{med[c.key] / med[b.key]:>9.2f}x" for b in baselines))
    l1_b1, l1_b2 = med["L1"] / med["B1"], med["L1"] / med["B2"]
    print(
        f"\ngoal: listener with the production filter (L1) >= 0.50x the raw parse: "
        f"vs B1 (split + count) {l1_b1:.2f}x {'met' if l1_b1 >= 0.5 else 'NOT met'}; "
        f"vs B2 (split + dict) {l1_b2:.2f}x {'met' if l1_b2 >= 0.5 else 'NOT met'}"
    )
    print("note: B1 only splits and counts bytes (C speed); any client that builds a dict per event is far")
    print(
        "      below it. TELEPHONY.md section 11's raw asyncio figures (150-170k/s) are of the order of B2."
    )
    print(f"elapsed: {time.monotonic() - started:.0f}s")
    return 0


def _noop(event: dict[str, str]) -> None:
    return None


if __name__ == "__main__":
    raise SystemExit(main())
