"""RFC 4733 key-press pcaps that Asterisk accepts more than once per call.

SIPp's stock ``dtmf_2833_<key>.pcap`` files all come from one capture: one SSRC and a fixed RTP
sequence number and timestamp per key (``1`` < ``0`` < ``2`` < ... < ``9`` < ``star`` < ``pound``).
``play_pcap_audio`` replays them verbatim and Asterisk ignores an RFC 4733 event whose timestamp is
not newer than the last one, so the second press of a call is silently dropped unless its
timestamp happens to be higher (9 then 4, 4 then 4, 1 then 0 all lose the second key).

Press number ``n`` of a call therefore gets a copy with RTP seq + 5000·(n−1) and timestamp
+ 100000·(n−1). The stock timestamps all lie in [13280, 92640], a span below 100000, so press
n+1 is newer than press n whatever the keys. Everything else is left as captured: SIPp rewrites
the IP addresses, ports and UDP checksum when it plays the file.

Pure Python (struct): classic little/big-endian pcap, Ethernet II, IPv4, UDP, RTP.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

STOCK_DIR = Path("/usr/share/sip-tester")
SEQ_STEP = 5000
TS_STEP = 100_000
# The simulated caller's keypad: file stem of the stock pcap per key.
KEY_NAMES: dict[str, str] = {str(d): str(d) for d in range(10)} | {"*": "star", "#": "pound"}

_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}
_LINKTYPE_ETHERNET = 1
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_VLAN = 0x8100
_IPPROTO_UDP = 17


class PcapError(ValueError):
    """The file is not a pcap of RTP over UDP/IPv4/Ethernet that we know how to shift."""


@dataclass(frozen=True)
class PcapRecord:
    """One captured frame with its capture time."""

    ts_sec: int
    ts_usec: int
    orig_len: int
    frame: bytes

    @property
    def time_us(self) -> int:
        return self.ts_sec * 1_000_000 + self.ts_usec

    def at(self, time_us: int) -> PcapRecord:
        """The same frame captured at another time (used to space presses in one file)."""
        return PcapRecord(time_us // 1_000_000, time_us % 1_000_000, self.orig_len, self.frame)


@dataclass(frozen=True)
class Pcap:
    """A parsed pcap file: the raw global header (kept byte for byte), byte order and records."""

    header: bytes
    endian: str
    records: tuple[PcapRecord, ...]


def read_pcap(path: Path) -> Pcap:
    """Parse a classic pcap file (not pcapng)."""
    data = Path(path).read_bytes()
    if len(data) < 24 or data[:4] not in _PCAP_MAGIC:
        raise PcapError(f"{path}: not a classic microsecond pcap file")
    endian = _PCAP_MAGIC[data[:4]]
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != _LINKTYPE_ETHERNET:
        raise PcapError(f"{path}: link type {linktype}, only Ethernet (1) is supported")
    records = []
    offset = 24
    while offset + 16 <= len(data):
        ts_sec, ts_usec, incl_len, orig_len = struct.unpack(endian + "IIII", data[offset : offset + 16])
        offset += 16
        frame = data[offset : offset + incl_len]
        if len(frame) != incl_len:
            raise PcapError(f"{path}: truncated record at byte {offset}")
        offset += incl_len
        records.append(PcapRecord(ts_sec, ts_usec, orig_len, frame))
    return Pcap(data[:24], endian, tuple(records))


def write_pcap(path: Path, pcap: Pcap) -> Path:
    """Write ``pcap`` back in its original byte order."""
    out = bytearray(pcap.header)
    for rec in pcap.records:
        out += struct.pack(pcap.endian + "IIII", rec.ts_sec, rec.ts_usec, len(rec.frame), rec.orig_len)
        out += rec.frame
    path = Path(path)
    path.write_bytes(bytes(out))
    return path


def rtp_offset(frame: bytes) -> int:
    """Byte offset of the RTP header inside an Ethernet/IPv4/UDP frame."""
    pos = 12
    ethertype = struct.unpack("!H", frame[pos : pos + 2])[0]
    while ethertype == _ETHERTYPE_VLAN:
        pos += 4
        ethertype = struct.unpack("!H", frame[pos : pos + 2])[0]
    if ethertype != _ETHERTYPE_IPV4:
        raise PcapError(f"ethertype {ethertype:#06x} is not IPv4")
    ip = pos + 2
    if frame[ip] >> 4 != 4:
        raise PcapError("not an IPv4 packet")
    if frame[ip + 9] != _IPPROTO_UDP:
        raise PcapError(f"IP protocol {frame[ip + 9]} is not UDP")
    rtp = ip + (frame[ip] & 0x0F) * 4 + 8
    if len(frame) < rtp + 12 or frame[rtp] >> 6 != 2:
        raise PcapError("UDP payload is not RTP version 2")
    return rtp


def rtp_seq_ts(frame: bytes) -> tuple[int, int]:
    """(sequence number, timestamp) of the RTP packet in ``frame``."""
    off = rtp_offset(frame)
    seq, ts = struct.unpack("!HI", frame[off + 2 : off + 8])
    return seq, ts


def shift_frame(frame: bytes, seq_delta: int, ts_delta: int) -> bytes:
    """Add the deltas (mod 2^16 / 2^32, as RTP wraps) to the RTP seq and timestamp only."""
    off = rtp_offset(frame)
    seq, ts = struct.unpack("!HI", frame[off + 2 : off + 8])
    patched = struct.pack("!HI", (seq + seq_delta) & 0xFFFF, (ts + ts_delta) & 0xFFFFFFFF)
    return frame[: off + 2] + patched + frame[off + 8 :]


def stock_pcap(key: str, stock_dir: Path = STOCK_DIR) -> Path:
    """Path of SIPp's stock pcap for ``key`` (0-9, ``*``, ``#``)."""
    if key not in KEY_NAMES:
        raise PcapError(f"no DTMF pcap for key {key!r}")
    return Path(stock_dir) / f"dtmf_2833_{KEY_NAMES[key]}.pcap"


def press_records(key: str, press: int, stock_dir: Path = STOCK_DIR) -> tuple[Pcap, list[PcapRecord]]:
    """The stock records for ``key``, shifted for press number ``press`` (1-based) of a call."""
    if press < 1:
        raise PcapError("press numbers start at 1")
    pcap = read_pcap(stock_pcap(key, stock_dir))
    seq_delta, ts_delta = SEQ_STEP * (press - 1), TS_STEP * (press - 1)
    records = [
        PcapRecord(r.ts_sec, r.ts_usec, r.orig_len, shift_frame(r.frame, seq_delta, ts_delta))
        for r in pcap.records
    ]
    return pcap, records


def write_shifted(key: str, press: int, out_dir: Path, stock_dir: Path = STOCK_DIR) -> Path:
    """Write ``dtmf_2833_<key>_p<press>.pcap``: one key press usable as press ``press`` of a call."""
    pcap, records = press_records(key, press, stock_dir)
    path = Path(out_dir) / f"dtmf_2833_{KEY_NAMES[key]}_p{press}.pcap"
    return write_pcap(path, Pcap(pcap.header, pcap.endian, tuple(records)))


def write_press_sequence(
    keys: Sequence[str],
    first_press: int,
    path: Path,
    gap_ms: int = 250,
    stock_dir: Path = STOCK_DIR,
) -> Path:
    """Write several presses into one pcap, each press using the next shifted copy.

    Press i (0-based) of ``keys`` is press number ``first_press + i`` of the call and starts
    ``gap_ms`` after the previous press ended. SIPp replays a pcap with its capture timing, so one
    ``play_pcap_audio`` types the whole sequence, e.g. "1", "0" for an NPS 10.
    """
    if not keys:
        raise PcapError("empty key sequence")
    header: Pcap | None = None
    out: list[PcapRecord] = []
    next_start_us = 0
    for i, key in enumerate(keys):
        pcap, records = press_records(key, first_press + i, stock_dir)
        header = header or pcap
        base = records[0].time_us
        for rec in records:
            out.append(rec.at(next_start_us + rec.time_us - base))
        next_start_us = out[-1].time_us + gap_ms * 1000
    assert header is not None
    return write_pcap(path, Pcap(header.header, header.endian, tuple(out)))


def rtp_timestamps(paths: Iterable[Path]) -> list[int]:
    """All RTP timestamps in the given pcaps, in order: lets tests check they strictly increase."""
    return [rtp_seq_ts(rec.frame)[1] for path in paths for rec in read_pcap(path).records]
