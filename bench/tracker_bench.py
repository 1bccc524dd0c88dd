"""ResponseTracker throughput over a real 100k-row result set, fed in 64 KiB chunks.

    .venv/bin/python bench/tracker_bench.py                      # record from the primary
    .venv/bin/python bench/tracker_bench.py --host 127.0.0.1 --port 3399
    .venv/bin/python bench/tracker_bench.py --synthetic          # no server needed

The reply to ``SELECT seq, CONCAT('row-', seq), seq * 1.5 FROM seq_1_to_100000`` is
recorded once per mode (classic EOF and CLIENT_DEPRECATE_EOF) with the raw recording
client from tests/vectors/responses/capture.py, cut into 64 KiB chunks the way they come
off a socket, and fed to a fresh tracker `--repeat` times; the best run is reported as
MB/s and packets/s. For scale, the same stream through `PacketFramer` (which joins every
payload) is measured too.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.protocol.constants import Capability, Command
from proxy.protocol.framing import PacketFramer, frame
from proxy.protocol.response import ResponseTracker

SQL = b"SELECT seq, CONCAT('row-', seq), seq * 1.5 FROM seq_1_to_%d"


def record(args: argparse.Namespace, deprecate_eof: bool) -> tuple[bytes, Capability]:
    from proxy.protocol import commands
    from tests.vectors.responses.capture import RawClient

    client = RawClient(
        args.host, args.port, args.user, args.password, "app", deprecate_eof=deprecate_eof
    )
    try:
        return client.exchange(commands.build_query(SQL % args.rows)), client.caps
    finally:
        client.close()


def synthesize(rows: int, deprecate_eof: bool) -> tuple[bytes, Capability]:
    caps = Capability.CLIENT_PROTOCOL_41 | Capability.CLIENT_TRANSACTIONS
    coldef = b"\x03def\x00\x00\x00\x03seq\x00\x0c\x3f\x00\x15\x00\x00\x00\x08\x81\x00\x00\x00\x00"
    payloads = [b"\x03", coldef, coldef, coldef]
    if deprecate_eof:
        caps |= Capability.CLIENT_DEPRECATE_EOF
    else:
        payloads.append(b"\xfe\x00\x00\x02\x00")
    for i in range(1, rows + 1):
        text = [str(i).encode(), b"row-%d" % i, b"%.1f" % (i * 1.5)]
        payloads.append(b"".join(bytes((len(t),)) + t for t in text))
    payloads.append(b"\xfe\x00\x00\x02\x00\x00\x00" if deprecate_eof else b"\xfe\x00\x00\x02\x00")
    return b"".join(frame(p, i + 1) for i, p in enumerate(payloads)), caps


def best_of(repeat: int, run: Callable[[], int]) -> tuple[float, int]:
    best = float("inf")
    result = 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench(data: bytes, caps: Capability, chunk: int, repeat: int) -> None:
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]

    def track() -> int:
        tracker = ResponseTracker(caps)
        tracker.start(Command.COM_QUERY)
        for piece in chunks:
            tracker.feed(piece)
        assert tracker.done and tracker.outcome is not None
        return tracker.outcome.rows

    def framer() -> int:
        packer = PacketFramer()
        return sum(len(packer.feed(piece)) for piece in chunks)

    seconds, rows = best_of(repeat, track)
    packets = best_of(1, framer)[1]
    mb = len(data) / 1e6
    print(
        f"  stream: {len(data):,} bytes, {packets:,} packets, {rows:,} rows, {len(chunks)} chunks"
    )
    print(
        f"  ResponseTracker: {seconds * 1e3:7.1f} ms  {mb / seconds:8.1f} MB/s"
        f"  {packets / seconds / 1e6:6.2f} M packets/s"
    )
    seconds, _ = best_of(max(1, repeat // 4), framer)
    print(
        f"  PacketFramer:    {seconds * 1e3:7.1f} ms  {mb / seconds:8.1f} MB/s"
        f"  {packets / seconds / 1e6:6.2f} M packets/s  (joins payloads; for scale)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.10")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--user", default="app")
    parser.add_argument("--password", default="app-password")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=64 * 1024)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--synthetic", action="store_true", help="do not connect; build rows")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {args.chunk} byte chunks, best of {args.repeat}")
    for deprecate_eof in (False, True):
        if args.synthetic:
            source = "synthetic"
            data, caps = synthesize(args.rows, deprecate_eof)
        else:
            source = f"recorded from {args.host}:{args.port}"
            data, caps = record(args, deprecate_eof)
        mode = "CLIENT_DEPRECATE_EOF" if deprecate_eof else "classic EOF"
        print(f"{mode} ({source}):")
        bench(data, caps, args.chunk, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
