"""framing: frame() and PacketFramer, including 16 MiB continuation."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.protocol.constants import MAX_PACKET_PAYLOAD
from proxy.protocol.errors import RemoteProtocolError
from proxy.protocol.framing import Packet, PacketFramer, frame, next_seq_after

MAX = MAX_PACKET_PAYLOAD

FRAMES = [
    (b"", 0, b"\x00\x00\x00\x00"),
    (b"\x0e", 0, b"\x01\x00\x00\x00\x0e"),
    (b"\x03SELECT 1", 7, b"\x09\x00\x00\x07\x03SELECT 1"),
    (b"x", 0x1FF, b"\x01\x00\x00\xffx"),  # sequence ids wrap at 256
]


@pytest.mark.parametrize("payload, seq, wire", FRAMES)
def test_frame_vectors(payload: bytes, seq: int, wire: bytes) -> None:
    assert frame(payload, seq) == wire
    packets = PacketFramer().feed(wire)
    assert packets == [Packet(seq & 0xFF, payload, (seq + 1) & 0xFF)]
    assert PacketFramer().feed(wire[:-1]) == []


def _payload(size: int) -> bytes:
    # Repeating, position-dependent content so a misplaced split shows up.
    return (bytes(range(251)) * (size // 251 + 1))[:size]


BIG_SIZES = [MAX - 1, MAX, MAX + 1, 1 << 24, 2 * MAX, 2 * MAX + 5]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([0, 1, 250, 0xFFFF, *BIG_SIZES]), st.integers(0, 255))
def test_round_trip_across_16mib(size: int, seq: int) -> None:
    payload = _payload(size)
    wire = frame(payload, seq)
    physical = size // MAX + 1  # a multiple of MAX ends with an empty packet
    assert len(wire) == size + 4 * physical
    framer = PacketFramer()
    packets = framer.feed(wire)
    assert len(packets) == 1
    assert packets[0].seq == seq
    assert packets[0].next_seq == next_seq_after(size, seq) == (seq + physical) & 0xFF
    assert packets[0].payload == payload
    assert framer.buffered == 0


def test_exactly_max_is_followed_by_an_empty_packet() -> None:
    wire = frame(b"a" * MAX, 3)
    assert wire[:4] == b"\xff\xff\xff\x03"
    assert wire[-4:] == b"\x00\x00\x00\x04"


@given(
    st.lists(st.binary(max_size=40), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0, max_value=400), max_size=10),
)
def test_any_split_gives_the_same_packets(payloads: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(frame(p, i) for i, p in enumerate(payloads))
    framer = PacketFramer()
    got: list[Packet] = []
    start = 0
    for cut in [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]:
        got += framer.feed(wire[start:cut])
        start = cut
    assert [p.payload for p in got] == payloads
    assert [p.seq for p in got] == list(range(len(payloads)))


def test_byte_by_byte_with_continuation() -> None:
    payload = _payload(MAX + 3)
    wire = frame(payload, 0) + frame(b"next", 2)
    framer = PacketFramer()
    got = []
    for chunk in (wire[:2], wire[2:5], wire[5:MAX], wire[MAX : MAX + 6], wire[MAX + 6 :]):
        got += framer.feed(memoryview(chunk))
    assert [p.payload for p in got] == [payload, b"next"]


def test_trailing_partial_packet_stays_buffered() -> None:
    framer = PacketFramer()
    assert framer.feed(frame(b"one", 0) + frame(b"two", 1)[:5]) == [Packet(0, b"one", 1)]
    assert framer.buffered == 5
    assert framer.feed(b"wo") == [Packet(1, b"two", 2)]


def test_declared_length_above_max_raises_before_buffering() -> None:
    framer = PacketFramer(max_packet_size=1000)
    with pytest.raises(RemoteProtocolError, match="max_allowed_packet"):
        framer.feed(b"\xe9\x03\x00\x00")  # 1001 bytes announced, none sent


def test_packets_ahead_of_a_violation_are_returned_and_the_error_kept() -> None:
    framer = PacketFramer(max_packet_size=1000)
    packets = framer.feed(b"\x02\x00\x00\x00\x03x" + b"\xe9\x03\x00\x00junk")
    assert packets == [Packet(0, b"\x03x", 1)]
    assert framer.error is not None and "max_allowed_packet" in str(framer.error)
    with pytest.raises(RemoteProtocolError, match="max_allowed_packet"):
        framer.feed(b"more")


def test_max_size_counts_continued_parts() -> None:
    framer = PacketFramer(max_packet_size=MAX + 10)
    first = b"\xff\xff\xff\x00" + b"a" * MAX
    assert framer.feed(first) == []
    with pytest.raises(RemoteProtocolError, match="max_allowed_packet"):
        framer.feed(b"\x0b\x00\x00\x01")


def test_out_of_order_continuation_raises() -> None:
    framer = PacketFramer()
    framer.feed(b"\xff\xff\xff\x05" + b"a" * MAX)
    with pytest.raises(RemoteProtocolError, match="out of order"):
        framer.feed(b"\x01\x00\x00\x07b")


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_remote_protocol_error(data: bytes) -> None:
    framer = PacketFramer(max_packet_size=1 << 16)
    try:
        packets = framer.feed(data)
    except RemoteProtocolError:
        return
    assert sum(len(p.payload) + 4 for p in packets) + framer.buffered == len(data)
