"""ResponseTracker against the live primary: every reply end found, including big ones.

The recording client and corpus are those of tests/vectors/responses/capture.py: each
command is sent with a pipelined marker query, and the reply is every byte before the
marker's reply, so the expected end does not come from the tracker. Here the corpus runs
at test time (with unique object names) plus replies too big for the repository: 100k
rows, rows over 16 MiB, a row of exactly two full packets, and a binary-protocol 17 MiB
row. A last test pipelines a batch of commands on one socket and feeds the chunks exactly
as recv() returned them through one tracker per command.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.protocol import commands
from proxy.protocol.constants import Capability, Command
from proxy.protocol.response import OutcomeKind, ResponseState, ResponseTracker
from tests.integration.cluster_fixture import ClusterHandle
from tests.vectors.responses.capture import (
    MODES,
    DdlRunner,
    RawClient,
    Recorded,
    Session,
    admin_ddl,
    big_corpus,
    corpus,
    drop_schema,
    setup_schema,
)

pytestmark = pytest.mark.integration

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "responses"
CORPUS_NAMES = sorted({path.name.split(".")[0] for path in VECTORS.glob("*.json")})
BIG_NAMES = ["select_100k", "row_over_16mib", "row_exactly_two_packets", "execute_big"]
NEXT_REPLY = b"\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00"

Endpoint = tuple[str, int]


@pytest.fixture(scope="module")
def primary(cluster: ClusterHandle) -> Endpoint:
    return cluster.address(cluster.primary), cluster.port


def _client(cluster: ClusterHandle, deprecate_eof: bool) -> RawClient:
    host, port = cluster.address(cluster.primary), cluster.port
    user, password = cluster.app.user, cluster.app.password
    return RawClient(host, port, user, password, cluster.database, deprecate_eof=deprecate_eof)


@pytest.fixture(scope="module")
def ddl(cluster: ClusterHandle, primary: Endpoint) -> DdlRunner:
    host, port = primary
    return admin_ddl(host, port, cluster.admin.user, cluster.admin.password, cluster.database)


@pytest.fixture(scope="module")
def prefix(cluster: ClusterHandle, ddl: DdlRunner) -> Iterator[str]:
    name = cluster.unique_name("rtr") + "_"
    yield name
    drop_schema(ddl, name)


@pytest.fixture(scope="module")
def recordings(cluster: ClusterHandle, ddl: DdlRunner, prefix: str) -> dict[str, Recorded]:
    recorded: dict[str, Recorded] = {}
    for mode, deprecate_eof in MODES.items():
        client = _client(cluster, deprecate_eof)
        try:
            for item in [*corpus(client, prefix, ddl), *big_corpus(client)]:
                recorded[f"{item.name}.{mode}"] = item
        finally:
            client.close()
    return recorded


def _feed(recorded: Recorded, chunks: list[bytes]) -> tuple[ResponseTracker, int]:
    tracker = ResponseTracker(recorded.caps)
    tracker.start(recorded.command, cursor=recorded.cursor)
    consumed = 0
    for chunk in chunks:
        while chunk and not tracker.done:
            used = tracker.feed(chunk)
            consumed += used
            chunk = chunk[used:]
            if tracker.state is ResponseState.LOCAL_INFILE_REQUESTED:
                assert consumed == recorded.infile_at
                tracker.infile_sent()
    return tracker, consumed


def _check(recorded: Recorded, tracker: ResponseTracker, consumed: int) -> None:
    assert tracker.done
    assert consumed == len(recorded.reply)
    outcome = tracker.outcome
    assert outcome is not None
    got = {
        "kind": outcome.kind.name,
        "rows": outcome.rows,
        "result_sets": outcome.result_sets,
        "last_seq": tracker.last_seq,
        "error_code": outcome.error_code,
        "status": None if outcome.status is None else int(outcome.status),
        "warnings": outcome.warnings,
    }
    assert {key: got[key] for key in recorded.expect} == recorded.expect


def _random_chunks(data: bytes, seed: str, largest: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks = []
    pos = 0
    while pos < len(data):
        size = rng.randint(1, largest)
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", CORPUS_NAMES + BIG_NAMES)
def test_reply_end_found(recordings: dict[str, Recorded], name: str, mode: str) -> None:
    recorded = recordings[f"{name}.{mode}"]
    data = recorded.reply + NEXT_REPLY
    _check(recorded, *_feed(recorded, [data]))
    _check(recorded, *_feed(recorded, _random_chunks(data, name + mode, 65536)))
    if len(data) < 50_000:
        _check(recorded, *_feed(recorded, _random_chunks(data, name, 3)))


@pytest.mark.parametrize("mode", list(MODES))
def test_big_replies_really_are_big(recordings: dict[str, Recorded], mode: str) -> None:
    assert len(recordings[f"select_100k.{mode}"].reply) > 2_000_000
    for name in ("row_over_16mib", "row_exactly_two_packets", "execute_big"):
        assert len(recordings[f"{name}.{mode}"].reply) > 0xFFFFFF


@pytest.mark.parametrize("mode", list(MODES))
def test_pipelined_batch_fed_as_received(
    cluster: ClusterHandle, ddl: DdlRunner, prefix: str, mode: str
) -> None:
    """Many commands sent back to back; chunks straight from recv() cross reply borders."""
    client = _client(cluster, MODES[mode])
    try:
        setup_schema(Session(client, prefix, ddl))
        batch = _pipeline_batch(prefix)
        client.recv_log = []
        for payload, _ in batch:
            client.send(payload)
        stream = client.exchange(commands.build_ping())  # + the marker: ends the batch
        chunks = client.recv_log
    finally:
        client.close()
    command_bytes = [payload[0] for payload, _ in batch]
    expected = [kind for _, kind in batch]
    assert _track_pipeline(client.caps, command_bytes, chunks, len(stream)) == expected
    whole = b"".join(chunks)  # the same bytes, cut so that chunks straddle reply borders
    for size in (65536, 1000):
        cut = [whole[i : i + size] for i in range(0, len(whole), size)]
        assert _track_pipeline(client.caps, command_bytes, cut, len(stream)) == expected


def _pipeline_batch(prefix: str) -> list[tuple[bytes, OutcomeKind]]:
    q = commands.build_query
    return [
        (q(b"SELECT seq, REPEAT('r', seq % 100) FROM seq_1_to_100000"), OutcomeKind.RESULT_SET),
        (q(b"SELECT 1; SELECT 2, 3; DO 1"), OutcomeKind.OK),
        (q(f"CALL {prefix}three()".encode()), OutcomeKind.OK),
        (commands.build_ping(), OutcomeKind.OK),
        (q(f"SELECT seq, {prefix}fail_at(seq, 5000) FROM seq_1_to_9000".encode()), OutcomeKind.ERR),
        (q(b"SELECT REPEAT('x', 17 * 1024 * 1024), 'after'"), OutcomeKind.RESULT_SET),
        (commands.build_statistics(), OutcomeKind.STATISTICS),
        (commands.build_stmt_prepare(b"SELECT ?, 2"), OutcomeKind.OK),
        (commands.build_field_list(f"{prefix}t".encode()), OutcomeKind.EOF),
        (q(b"SELEC"), OutcomeKind.ERR),
    ]


def _track_pipeline(
    caps: Capability, command_bytes: list[int], chunks: list[bytes], total: int
) -> list[OutcomeKind]:
    """Feed recv() chunks through one tracker per command; return the outcome kinds.

    The recorded chunks run on into the ping and marker replies; only the first `total`
    bytes belong to the batch (plus the ping, which is tracked as the last command).
    """
    commands_left = [*command_bytes, Command.COM_PING]
    kinds: list[OutcomeKind] = []
    tracker: ResponseTracker | None = ResponseTracker(caps)
    assert tracker is not None
    tracker.start(commands_left.pop(0))
    consumed = 0
    for chunk in chunks:
        while chunk and tracker is not None:
            used = tracker.feed(chunk)
            consumed += used
            chunk = chunk[used:]
            if tracker.done:
                assert tracker.outcome is not None
                kinds.append(tracker.outcome.kind)
                tracker = _next_tracker(caps, commands_left)
        if tracker is None:
            break
    assert consumed == total
    assert kinds.pop() is OutcomeKind.OK  # the ping
    return kinds


def _next_tracker(caps: Capability, commands_left: list[int]) -> ResponseTracker | None:
    if not commands_left:
        return None
    tracker = ResponseTracker(caps)
    tracker.start(commands_left.pop(0))
    return tracker
