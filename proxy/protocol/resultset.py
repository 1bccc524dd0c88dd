"""Decoding small text result sets, for the proxy's own queries only.

Client traffic is never decoded: rows are forwarded as bytes. The proxy does run a
few statements of its own on backend connections (`MASTER_GTID_WAIT`, reading back
a session variable) and needs their values; those results are a handful of rows, so
joining and decoding them here costs nothing that matters.
"""

from __future__ import annotations

from proxy.protocol.codec import read_lenenc_bytes, read_lenenc_int
from proxy.protocol.constants import EOF_HEADER, ERR_HEADER, OK_HEADER, Capability
from proxy.protocol.errors import RemoteProtocolError
from proxy.protocol.framing import PacketFramer

Row = list[bytes | None]


def decode_text_rows(stream: bytes, capabilities: Capability) -> list[Row]:
    """All rows of the first text result set in `stream` (empty for an OK reply)."""
    packets = PacketFramer().feed(stream)
    if not packets:
        raise RemoteProtocolError("empty reply")
    first = packets[0].payload
    if first[:1] in (bytes((OK_HEADER,)), bytes((ERR_HEADER,))):
        return []
    columns, _ = read_lenenc_int(first, 0)
    pos = 1 + columns
    if not capabilities & Capability.CLIENT_DEPRECATE_EOF:
        pos += 1
    rows: list[Row] = []
    for packet in packets[pos:]:
        payload = packet.payload
        if _is_terminator(payload):
            break
        rows.append(_decode_row(payload, columns))
    return rows


def _is_terminator(payload: bytes) -> bool:
    return payload[:1] == bytes((ERR_HEADER,)) or (
        payload[:1] == bytes((EOF_HEADER,)) and len(payload) < 0xFFFFFF
    )


def _decode_row(payload: bytes, columns: int) -> Row:
    row: Row = []
    pos = 0
    for _ in range(columns):
        if payload[pos : pos + 1] == b"\xfb":
            row.append(None)
            pos += 1
        else:
            value, pos = read_lenenc_bytes(payload, pos)
            row.append(value)
    return row
