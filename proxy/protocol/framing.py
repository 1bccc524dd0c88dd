"""Packet framing: 4-byte headers, sequence ids, and 16 MiB continuation.

https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html

Each packet is `int<3> payload_length, int<1> sequence_id, payload`. A payload of
exactly 0xFFFFFF bytes means the logical packet continues in the next one; a logical
payload that is a multiple of 0xFFFFFF ends with an empty packet.

`PacketFramer` is the slow, general path for traffic the proxy must understand whole
(handshakes, client commands). It is fed arbitrary chunks, returns whole logical packets,
and checks each declared length against `max_packet_size` *before* buffering, so a lying
header cannot make it allocate without bound. Result sets never go through it: the
response tracker reads headers in place and forwards chunks untouched.
"""

from __future__ import annotations

from typing import Final, final

from proxy.protocol.constants import HEADER_SIZE, MAX_PACKET_PAYLOAD
from proxy.protocol.errors import RemoteProtocolError


@final
class Packet:
    """One logical packet: the joined payload and its first and next sequence ids.

    A plain class with Final attributes rather than a NamedTuple or a frozen dataclass:
    one is built per client command, and compiled (mypyc) only a plain class gets a
    native constructor (31 ns, against 250 ns for a NamedTuple and 450 ns for a frozen
    dataclass, whose generated __init__ stays interpreted)."""

    __slots__ = ("next_seq", "payload", "seq")

    def __init__(self, seq: int, payload: bytes, next_seq: int) -> None:
        self.seq: Final = seq
        self.payload: Final = payload
        self.next_seq: Final = next_seq

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Packet):
            return NotImplemented
        return (
            self.seq == other.seq
            and self.next_seq == other.next_seq
            and self.payload == other.payload
        )

    def __repr__(self) -> str:
        return f"Packet(seq={self.seq}, payload={self.payload!r}, next_seq={self.next_seq})"


def frame(payload: bytes | memoryview, seq: int) -> bytes:
    """Wrap `payload` in packet headers starting at `seq`, splitting at 16 MiB - 1."""
    size = len(payload)
    if size < MAX_PACKET_PAYLOAD:
        return size.to_bytes(3, "little") + bytes((seq & 0xFF,)) + bytes(payload)
    parts = []
    pos = 0
    while True:
        chunk = payload[pos : pos + MAX_PACKET_PAYLOAD]
        parts.append(len(chunk).to_bytes(3, "little") + bytes((seq & 0xFF,)))
        parts.append(bytes(chunk))
        seq += 1
        pos += len(chunk)
        if len(chunk) < MAX_PACKET_PAYLOAD:
            return b"".join(parts)


def next_seq_after(payload_size: int, seq: int) -> int:
    """The sequence id that follows a logical packet of `payload_size` framed from `seq`."""
    return (seq + payload_size // MAX_PACKET_PAYLOAD + 1) & 0xFF


class PacketFramer:
    """Incremental parser: bytes in, whole logical `Packet`s out.

    Sequence ids are checked only for continuity inside one logical packet; whether a
    packet's first sequence id is the one expected is the caller's business (it depends
    on where the conversation is).

    A violation (a length over `max_packet_size`, a gap inside a split packet) raises
    RemoteProtocolError, unless whole packets came before it in the same chunk: those
    are returned, and the error waits in `error` (raised by the next `feed`), so a
    client's valid commands ahead of its garbage still run, as on a server.
    """

    def __init__(self, max_packet_size: int = 1 << 30) -> None:
        self.max_packet_size = max_packet_size
        self.error: RemoteProtocolError | None = None
        self._buf = bytearray()
        self._parts: list[bytes] = []
        self._parts_size = 0
        self._first_seq = -1
        self._expect_seq = -1

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a packet."""
        return len(self._buf) + self._parts_size

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        if self.error is not None:
            raise self.error
        self._buf += data
        packets: list[Packet] = []
        pos = 0
        buf = self._buf
        try:
            while len(buf) - pos >= HEADER_SIZE:
                size = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
                seq = buf[pos + 3]
                self._check_size(size)
                end = pos + HEADER_SIZE + size
                if end > len(buf):
                    break
                packet = self._take(seq, bytes(buf[pos + HEADER_SIZE : end]), size)
                if packet is not None:
                    packets.append(packet)
                pos = end
        except RemoteProtocolError as exc:
            if not packets:
                raise
            self.error = exc
        if pos:
            del buf[:pos]
        return packets

    def _check_size(self, size: int) -> None:
        if self._parts_size + size > self.max_packet_size:
            raise RemoteProtocolError(
                f"packet of at least {self._parts_size + size} bytes exceeds "
                f"max_allowed_packet ({self.max_packet_size})"
            )

    def _take(self, seq: int, payload: bytes, size: int) -> Packet | None:
        if self._parts:
            if seq != self._expect_seq:
                raise RemoteProtocolError(
                    f"packets out of order: expected sequence id {self._expect_seq}, got {seq}"
                )
        else:
            self._first_seq = seq
        if size == MAX_PACKET_PAYLOAD:
            self._parts.append(payload)
            self._parts_size += size
            self._expect_seq = (seq + 1) & 0xFF
            return None
        if self._parts:
            self._parts.append(payload)
            payload = b"".join(self._parts)
            self._parts.clear()
            self._parts_size = 0
        return Packet(self._first_seq, payload, (seq + 1) & 0xFF)
