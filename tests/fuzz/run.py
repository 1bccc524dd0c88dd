"""The long fuzz run (`make fuzz`): a million hostile connections against a rwproxy child.

    .venv/bin/python -m tests.fuzz.run                    # FUZZ_INPUTS (default 1,000,000)
    .venv/bin/python -m tests.fuzz.run --inputs 20000 --workers 16

Theory of operation
-------------------
rwproxy runs as ``python -m proxy serve --config config/local.yaml`` (bench/targets.py, on
uvloop as in production) with a 3 s handshake timeout, a 64 KiB max_allowed_packet and
/status on a free port. `--workers` threads each play inputs from their own seeded
`RandomChooser` (tests/fuzz/inputs.py: the same generators the hypothesis tests use) with
the oracle of tests/fuzz/client.py. Every `--check-every` inputs a fresh client must log in
and run SELECT 1, and the child must be alive.

Before and after, the proxy's baseline is read from outside (tests/fuzz/baseline.py:
/proc/<pid>/fd, VmRSS, /status sessions and pools); RSS and fds are also sampled every
10 s. At the end, the proxy's log is searched for tracebacks and ERROR lines.

Like the benchmarks, the run holds the integration tests' lock (/tmp/rwproxy-integration.lock)
in turns of at most `--turn-minutes`, so a waiting test session gets the cluster in between.
The report (counts by family and ending, ERR codes, problems with the inputs that caused
them, rate, baseline, samples) goes to bench/results/fuzz-<date>.md and stdout.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import itertools
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench import lab, procs, targets
from bench.report import fresh_path
from proxy import compiled
from tests.fuzz import baseline, client, inputs
from tests.fuzz.inputs import FuzzInput

RESULTS_DIR: Final = Path(__file__).resolve().parents[2] / "bench" / "results"
MAX_EXAMPLES_KEPT: Final = 20
SAMPLE_SECONDS: Final = 10.0


@dataclass
class Tally:
    """Counts shared by the workers (under `lock`)."""

    inputs: int = 0
    endings: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    errors: collections.Counter[int] = field(default_factory=collections.Counter)
    problems: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: list[str] = field(default_factory=list)
    liveness_failures: int = 0
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, fuzz: FuzzInput, verdict: client.Verdict) -> None:
        with self.lock:
            self.endings[(fuzz.family, verdict.ending)] += 1
            self.errors.update(set(verdict.error_codes))
            for problem in verdict.problems:
                kind = re.sub(r"[0-9]+", "N", problem.split(":")[0])[:80]
                self.problems[kind] += 1
                if len(self.examples) < MAX_EXAMPLES_KEPT:
                    self.examples.append(f"{problem}\n    input: {fuzz!r}")


def worker(
    number: int,
    address: tuple[str, int],
    args: argparse.Namespace,
    tally: Tally,
    tickets: itertools.count[int],
    stop: threading.Event,
) -> None:
    choose = inputs.RandomChooser(args.seed * 1000 + number)
    while not stop.is_set():
        ticket = next(tickets)
        if ticket >= args.inputs:
            return
        fuzz = inputs.any_input(choose)
        try:
            verdict = client.play(address, fuzz, quiet=args.quiet, bound=args.bound)
        except Exception as exc:  # a failed valid login, a timeout during the greeting...
            verdict = client.Verdict("exception", problems=[f"{type(exc).__name__}: {exc}"])
        tally.record(fuzz, verdict)
        with tally.lock:
            tally.inputs += 1
        if ticket % args.check_every == 0:
            try:
                client.liveness(address)
            except Exception as exc:
                with tally.lock:
                    tally.liveness_failures += 1
                    tally.examples.append(f"liveness failed after input {ticket}: {exc!r}")


def start_proxy(workdir: Path) -> tuple[targets.Target, tuple[str, int]]:
    http = ("127.0.0.1", procs.free_port())
    extra = {
        "RWPROXY_HTTP": f"{http[0]}:{http[1]}",
        "RWPROXY_HANDSHAKE_TIMEOUT_SECONDS": "3",
        "RWPROXY_MAX_ALLOWED_PACKET": str(inputs.FUZZ_MAX_ALLOWED_PACKET),
        "RWPROXY_POOL__MAX_SIZE": "32",
        "RWPROXY_POOL__POOL_TIMEOUT_SECONDS": "3",
    }
    return targets.start_rwproxy("rwproxy-fuzz", workdir, extra_env=extra), http


def run_block(
    address: tuple[str, int],
    args: argparse.Namespace,
    tally: Tally,
    tickets: itertools.count[int],
    proxy: targets.Target,
    until: float,
) -> None:
    """Workers play inputs until the tickets run out or `until` (the end of this turn)."""
    stop = threading.Event()
    with ThreadPoolExecutor(args.workers) as pool:
        futures = [
            pool.submit(worker, n, address, args, tally, tickets, stop) for n in range(args.workers)
        ]
        try:
            while not all(f.done() for f in futures):
                time.sleep(1.0)
                if time.monotonic() > until or not (proxy.child and proxy.child.alive()):
                    stop.set()
        except KeyboardInterrupt:  # SIGTERM/SIGINT: let the workers end their input, then stop
            stop.set()
            raise
        for f in futures:
            f.result()


def sample(proxy: targets.Target, tally: Tally, started: float, stop: threading.Event) -> None:
    while not stop.wait(SAMPLE_SECONDS):
        pid = proxy.pid
        if pid is None or not (proxy.child and proxy.child.alive()):
            return
        try:
            snap = (baseline.rss_kib(pid), baseline.fd_count(pid))
        except (OSError, RuntimeError):
            return
        with tally.lock:
            tally.samples.append((time.monotonic() - started, tally.inputs, *snap))


def log_findings(proxy: targets.Target) -> list[str]:
    if proxy.child is None:
        return []
    text = proxy.child.log_path.read_text(errors="replace")
    lines = text.splitlines()
    found = [i for i, line in enumerate(lines) if "Traceback" in line or " ERROR " in line]
    return ["\n".join(lines[i : i + 12]) for i in found[:5]] + (
        [f"... {len(found)} in all"] if len(found) > 5 else []
    )


def report(
    args: argparse.Namespace,
    tally: Tally,
    seconds: float,
    before: baseline.Snapshot,
    after: baseline.Snapshot,
    restored: list[str],
    log: list[str],
    alive: bool,
) -> str:
    rate = tally.inputs / seconds if seconds else 0.0
    hours = 1_000_000 / rate / 3600 if rate else float("inf")
    failed = tally.problems or tally.liveness_failures or restored or log
    verdict = "FAIL" if failed else "PASS"
    verdict = verdict if alive else "FAIL (the proxy died)"
    out = [
        f"# rwproxy socket fuzz, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"**{verdict}**: {tally.inputs:,} inputs in {seconds:.0f} s ({rate:.0f} inputs/s; "
        f"1 M inputs would take {hours:.1f} h), {args.workers} workers, seed {args.seed}, "
        f"quiet {args.quiet:g} s, bound {args.bound:g} s, liveness every {args.check_every}.",
        "",
        f"rwproxy commit {lab.git_commit()}; {compiled.describe()}.",
        "",
        "## Endings by family",
        "",
        "| family | ending | inputs |",
        "|---|---|---:|",
        *(f"| {f} | {e} | {n:,} |" for (f, e), n in sorted(tally.endings.items())),
        "",
        "## ERR codes (inputs that saw each code)",
        "",
        "| code | inputs |",
        "|---:|---:|",
        *(f"| {code} | {n:,} |" for code, n in tally.errors.most_common()),
        "",
        "## Problems",
        "",
        *(f"- {kind}: {n:,}" for kind, n in tally.problems.most_common()),
        f"- liveness failures: {tally.liveness_failures}",
        f"- proxy log ERROR/Traceback excerpts: {len(log)}",
        *(f"\n```\n{e}\n```" for e in tally.examples),
        *(f"\n```\n{e}\n```" for e in log),
        "",
        "## Baseline",
        "",
        f"- before: {before.describe()}",
        f"- after:  {after.describe()}",
        f"- not restored: {restored or 'none'}",
        "",
        "## Samples (elapsed s, inputs, RSS KiB, fds)",
        "",
        "| s | inputs | RSS KiB | fds |",
        "|---:|---:|---:|---:|",
        *(f"| {s:.0f} | {n:,} | {r:,} | {f} |" for s, n, r, f in tally.samples),
    ]
    return "\n".join(out) + "\n"


def output_path(directory: Path) -> Path:
    return fresh_path(directory, f"fuzz-{datetime.date.today().isoformat()}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__)
    parser.add_argument("--inputs", type=int, default=int(os.environ.get("FUZZ_INPUTS", 1e6)))
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", 1)))
    parser.add_argument("--quiet", type=float, default=0.25, help="silence before half-close")
    parser.add_argument("--bound", type=float, default=10.0, help="max wait for a close")
    parser.add_argument("--check-every", type=int, default=500)
    parser.add_argument("--turn-minutes", type=float, default=10.0)
    parser.add_argument("--lock-timeout", type=float, default=1800.0)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    args = parse_args(argv)
    lab.raise_fd_limit()
    turns = lab.ClusterTurns(args.lock_timeout)
    tally = Tally()
    tickets = itertools.count()
    with tempfile.TemporaryDirectory(prefix="rwfuzz-") as tmp:
        with turns.turn():
            proxy, http = start_proxy(Path(tmp))
        assert proxy.pid is not None
        try:
            look = lambda: baseline.outside(proxy.pid or 0, http)  # noqa: E731
            client.liveness(proxy.address)
            before = baseline.settle(look)
            started = time.monotonic()
            stop_sampling = threading.Event()
            threading.Thread(
                target=sample, args=(proxy, tally, started, stop_sampling), daemon=True
            ).start()
            while tally.inputs < args.inputs and proxy.child and proxy.child.alive():
                with turns.turn():
                    targets.wait_ready(proxy)
                    until = time.monotonic() + args.turn_minutes * 60
                    run_block(proxy.address, args, tally, tickets, proxy, until)
            seconds = time.monotonic() - started
            stop_sampling.set()
            alive = bool(proxy.child and proxy.child.alive())
            after = baseline.restored(before, look) if alive else before
            restored = baseline.problems(before, after, 16 * 1024) if alive else ["proxy died"]
        finally:
            proxy.stop()
        text = report(args, tally, seconds, before, after, restored, log_findings(proxy), alive)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = output_path(args.output_dir)
    path.write_text(text)
    print(text)
    print(f"report written to {path}", file=sys.stderr)
    return 0 if text.split("**")[1] == "PASS" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as stopped:
        print(f"fuzz run stopped ({stopped}); no report written", file=sys.stderr)
        sys.exit(130)
