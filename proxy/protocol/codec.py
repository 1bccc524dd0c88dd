"""Basic data types of the MySQL protocol: fixed and length-encoded integers and strings.

https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_dt_integers.html
https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_dt_strings.html

Every reader takes `(buf, pos)` and returns `(value, new_pos)`; a payload that ends too
early raises `RemoteProtocolError`, never `IndexError`, because payloads come from peers
we do not trust. Readers accept `bytes` or `memoryview` so large payloads are not copied
until a value is actually taken out.
"""

from __future__ import annotations

from proxy.protocol.errors import RemoteProtocolError

Buffer = bytes | bytearray | memoryview

NULL_COLUMN = 0xFB
"""In a text-protocol row, 0xFB stands for SQL NULL, not for a length."""


def _need(buf: Buffer, pos: int, size: int, what: str) -> None:
    if pos + size > len(buf):
        raise RemoteProtocolError(f"payload too short for {what} at offset {pos}")


def read_int(buf: Buffer, pos: int, size: int) -> tuple[int, int]:
    """int<size>: little-endian unsigned integer of 1 to 8 bytes."""
    _need(buf, pos, size, f"int<{size}>")
    return int.from_bytes(buf[pos : pos + size], "little"), pos + size


def read_int1(buf: Buffer, pos: int) -> tuple[int, int]:
    if pos >= len(buf):
        raise RemoteProtocolError(f"payload too short for int<1> at offset {pos}")
    return buf[pos], pos + 1


def read_lenenc_int(buf: Buffer, pos: int) -> tuple[int, int]:
    """int<lenenc>: < 0xFB is the value; 0xFC, 0xFD, 0xFE prefix 2, 3, 8 bytes.

    0xFB (NULL in rows) and 0xFF (ERR) are not integers and raise.
    """
    first, pos = read_int1(buf, pos)
    if first < 0xFB:
        return first, pos
    if first == 0xFC:
        return read_int(buf, pos, 2)
    if first == 0xFD:
        return read_int(buf, pos, 3)
    if first == 0xFE:
        return read_int(buf, pos, 8)
    raise RemoteProtocolError(f"invalid length-encoded integer prefix 0x{first:02x}")


def read_bytes(buf: Buffer, pos: int, size: int) -> tuple[bytes, int]:
    """string<fix>: exactly `size` bytes."""
    _need(buf, pos, size, f"string<{size}>")
    return bytes(buf[pos : pos + size]), pos + size


def read_lenenc_bytes(buf: Buffer, pos: int) -> tuple[bytes, int]:
    """string<lenenc>: an int<lenenc> length, then that many bytes."""
    size, pos = read_lenenc_int(buf, pos)
    return read_bytes(buf, pos, size)


def read_nul_bytes(buf: Buffer, pos: int) -> tuple[bytes, int]:
    """string<NUL>: bytes up to (not including) a 0x00, which is consumed."""
    end = bytes(buf[pos:]).find(b"\x00") if isinstance(buf, memoryview) else buf.find(b"\x00", pos)
    if end < 0:
        raise RemoteProtocolError(f"unterminated string<NUL> at offset {pos}")
    if isinstance(buf, memoryview):
        end += pos
    return bytes(buf[pos:end]), end + 1


def read_eof_bytes(buf: Buffer, pos: int) -> tuple[bytes, int]:
    """string<EOF>: the rest of the payload."""
    return bytes(buf[pos:]), len(buf)


def write_int(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def write_lenenc_int(value: int) -> bytes:
    if value < 0xFB:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfc" + value.to_bytes(2, "little")
    if value < 1 << 24:
        return b"\xfd" + value.to_bytes(3, "little")
    return b"\xfe" + value.to_bytes(8, "little")


def write_lenenc_bytes(value: bytes) -> bytes:
    return write_lenenc_int(len(value)) + value


def write_nul_bytes(value: bytes) -> bytes:
    if b"\x00" in value:
        raise ValueError("string<NUL> cannot contain a NUL byte")
    return value + b"\x00"
