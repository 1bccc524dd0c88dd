"""ClientConnection's buffer bounds, with a transport that records pause/resume calls.

The integration tests show the bounds end to end (tests/support/backpressure.py); these pin
the rules themselves: when reading pauses and resumes, and that a packet still being cut
never pauses reading (it could never complete).
"""

from __future__ import annotations

from proxy.client import LOGIN_BUFFER_LIMIT, QUEUE_LIMIT, ClientConnection


class RecordingTransport:
    def __init__(self) -> None:
        self.reading = True
        self.pauses = 0

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def write(self, data: bytes) -> None:
        pass


def packet(payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


async def connected(max_packet: int = 64 << 20) -> tuple[ClientConnection, RecordingTransport]:
    client = ClientConnection(lambda _: None, max_packet)
    transport = RecordingTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    return client, transport


async def test_login_bytes_pause_reading_past_the_limit_until_read() -> None:
    client, transport = await connected()
    client.data_received(b"x" * LOGIN_BUFFER_LIMIT)
    assert transport.reading
    client.data_received(b"x")
    assert not transport.reading
    assert len(await client.read_raw() or b"") == LOGIN_BUFFER_LIMIT + 1
    assert transport.reading


async def test_queued_commands_pause_reading_until_the_session_catches_up() -> None:
    client, transport = await connected()
    client.start_command_phase()
    statement = packet(b"\x03SELECT '" + b"x" * 60_000 + b"'")
    sent = 0
    while transport.reading:
        client.data_received(statement)
        sent += 1
    assert sent * len(statement) > QUEUE_LIMIT
    assert client.unread_bytes == sent * len(statement)
    while len(client.packets) > 1 and not transport.reading:
        client.next_packet_nowait()
    assert transport.reading and client.unread_bytes <= QUEUE_LIMIT // 2
    while client.next_packet_nowait() is not None:
        pass
    assert client.unread_bytes == 0 and transport.pauses == 1


async def test_a_packet_being_cut_never_pauses_reading() -> None:
    client, transport = await connected()
    client.start_command_phase()
    big = packet(b"\x03" + b"y" * (3 * QUEUE_LIMIT))
    chunks = [big[start : start + 65536] for start in range(0, len(big), 65536)]
    for chunk in chunks[:-1]:
        client.data_received(chunk)
        assert transport.reading
    client.data_received(chunks[-1])  # now whole and queued: over the limit until taken
    assert len(client.packets) == 1 and not transport.reading
    client.next_packet_nowait()
    assert transport.reading


async def test_a_multi_packet_payload_is_counted_with_all_its_headers() -> None:
    client, _ = await connected()
    client.start_command_phase()
    payload = b"\x03" + b"z" * 0xFFFFFF  # 16 MiB + 1: two wire packets
    client.data_received(packet(payload[:0xFFFFFF]) + b"\x01\x00\x00\x01" + payload[0xFFFFFF:])
    assert client.next_packet_nowait() is not None
    assert client.unread_bytes == 0
