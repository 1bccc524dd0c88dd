"""codec: int<n>, int<lenenc>, string<fix|lenenc|NUL|EOF>; vectors + fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.protocol import codec
from proxy.protocol.errors import RemoteProtocolError

LENENC_INTS = [
    (0, b"\x00"),
    (1, b"\x01"),
    (0xFA, b"\xfa"),
    (0xFB, b"\xfc\xfb\x00"),
    (0xFC, b"\xfc\xfc\x00"),
    (0xFFFF, b"\xfc\xff\xff"),
    (0x10000, b"\xfd\x00\x00\x01"),
    (0xFFFFFF, b"\xfd\xff\xff\xff"),
    (0x1000000, b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00"),
    (2**64 - 1, b"\xfe" + b"\xff" * 8),
]


@pytest.mark.parametrize("value, wire", LENENC_INTS)
def test_lenenc_int(value: int, wire: bytes) -> None:
    assert codec.write_lenenc_int(value) == wire
    assert codec.read_lenenc_int(wire, 0) == (value, len(wire))
    assert codec.read_lenenc_int(memoryview(b"ab" + wire), 2) == (value, len(wire) + 2)
    with pytest.raises(RemoteProtocolError):
        codec.read_lenenc_int(wire[:-1], 0)


@pytest.mark.parametrize("prefix", [b"\xfb", b"\xff"])
def test_lenenc_int_rejects_null_and_err_prefixes(prefix: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        codec.read_lenenc_int(prefix + b"\x00" * 8, 0)


FIXED_INTS = [
    (1, 0x7F, b"\x7f"),
    (2, 0x0102, b"\x02\x01"),
    (3, 0xFFFFFF, b"\xff\xff\xff"),
    (4, 0x01020304, b"\x04\x03\x02\x01"),
    (6, 0x010203040506, b"\x06\x05\x04\x03\x02\x01"),
    (8, 2**64 - 1, b"\xff" * 8),
]


@pytest.mark.parametrize("size, value, wire", FIXED_INTS)
def test_fixed_int(size: int, value: int, wire: bytes) -> None:
    assert codec.write_int(value, size) == wire
    assert codec.read_int(wire, 0, size) == (value, size)
    with pytest.raises(RemoteProtocolError):
        codec.read_int(wire[:-1], 0, size)


def test_int1() -> None:
    assert codec.read_int1(b"\x00\xfe", 1) == (0xFE, 2)
    with pytest.raises(RemoteProtocolError):
        codec.read_int1(b"\x00", 1)


LENENC_STRINGS = [
    (b"", b"\x00"),
    (b"def", b"\x03def"),
    (b"x" * 0xFA, b"\xfa" + b"x" * 0xFA),
    (b"y" * 0xFB, b"\xfc\xfb\x00" + b"y" * 0xFB),
    (b"z" * 0x10000, b"\xfd\x00\x00\x01" + b"z" * 0x10000),
]


@pytest.mark.parametrize("value, wire", LENENC_STRINGS, ids=lambda v: str(len(v)))
def test_lenenc_bytes(value: bytes, wire: bytes) -> None:
    assert codec.write_lenenc_bytes(value) == wire
    assert codec.read_lenenc_bytes(wire, 0) == (value, len(wire))
    with pytest.raises(RemoteProtocolError):
        codec.read_lenenc_bytes(wire[:-1], 0)


NUL_STRINGS = [(b"", b"\x00"), (b"mysql_native_password", b"mysql_native_password\x00")]


@pytest.mark.parametrize("value, wire", NUL_STRINGS)
def test_nul_bytes(value: bytes, wire: bytes) -> None:
    assert codec.write_nul_bytes(value) == wire
    assert codec.read_nul_bytes(wire, 0) == (value, len(wire))
    assert codec.read_nul_bytes(memoryview(b"#" + wire), 1) == (value, len(wire) + 1)
    with pytest.raises(RemoteProtocolError):
        codec.read_nul_bytes(wire[:-1], 0)


def test_nul_bytes_cannot_contain_nul() -> None:
    with pytest.raises(ValueError, match="NUL"):
        codec.write_nul_bytes(b"a\x00b")


def test_fixed_and_eof_bytes() -> None:
    assert codec.read_bytes(b"abcdef", 1, 3) == (b"bcd", 4)
    with pytest.raises(RemoteProtocolError):
        codec.read_bytes(b"abc", 1, 3)
    assert codec.read_eof_bytes(memoryview(b"abcdef"), 2) == (b"cdef", 6)
    assert codec.read_eof_bytes(b"abc", 3) == (b"", 3)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lenenc_int_round_trip(value: int) -> None:
    wire = codec.write_lenenc_int(value)
    assert codec.read_lenenc_int(wire + b"tail", 0) == (value, len(wire))


@given(st.binary(max_size=300))
def test_lenenc_bytes_round_trip(value: bytes) -> None:
    wire = codec.write_lenenc_bytes(value)
    assert codec.read_lenenc_bytes(wire, 0) == (value, len(wire))


@given(st.binary(max_size=20), st.integers(min_value=0, max_value=21))
def test_readers_only_raise_remote_protocol_error(data: bytes, pos: int) -> None:
    readers = (
        lambda: codec.read_lenenc_int(data, pos),
        lambda: codec.read_lenenc_bytes(data, pos),
        lambda: codec.read_nul_bytes(data, pos),
        lambda: codec.read_int(data, pos, 4),
        lambda: codec.read_int1(data, pos),
    )
    for read in readers:
        try:
            _, end = read()
        except RemoteProtocolError:
            continue
        assert pos < end <= len(data)
