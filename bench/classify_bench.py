"""Micro-benchmark of the statement classifier: microseconds per statement.

Run: `.venv/bin/python bench/classify_bench.py [--number N]`. Prints, for a few typical
statements, the cost of a cached lookup (the steady state of an application that repeats
its queries) and of a full classification (a new text every time).
"""

from __future__ import annotations

import argparse
import timeit

from proxy.routing.classify import classify, classify_uncached

STATEMENTS = (
    "SELECT c FROM sbtest1 WHERE id=123",
    "SELECT c FROM sbtest1 WHERE id BETWEEN 1 AND 100 ORDER BY c",
    "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 1 AND 100",
    "SELECT c FROM sbtest1 WHERE id=123 FOR UPDATE",
    "SELECT /* app=web */ name FROM users WHERE email = 'a@b.c' -- trailing",
    "UPDATE sbtest1 SET k=k+1 WHERE id=123",
    "INSERT INTO sbtest1 (id, k, c, pad) VALUES (1, 2, 'abc', 'def')",
    "SET autocommit=1",
    "BEGIN",
    "SELECT my_stored_function(id) FROM t WHERE id = 1",
)


def per_call_us(func: object, sql: str, number: int) -> float:
    seconds = timeit.timeit(lambda: func(sql), number=number)  # type: ignore[operator]
    return seconds / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=50_000, help="calls per measurement")
    number = parser.parse_args().number
    print(f"{'uncached':>9} {'cached':>8}  statement (µs per call, {number} calls)")
    for sql in STATEMENTS:
        classify(sql)  # warm the cache
        uncached = per_call_us(classify_uncached, sql, number)
        cached = per_call_us(classify, sql, number * 4)
        print(f"{uncached:9.2f} {cached:8.3f}  {sql}")
    rows = ",".join(f"({i}, 'text {i}')" for i in range(20_000))
    values = ",".join(f"'v{i}'" for i in range(20_000))
    for label, sql in (
        ("bulk INSERT", "INSERT INTO t VALUES " + rows),
        ("bulk INSERT with a ';' in a literal", "INSERT INTO t VALUES " + rows + ",(0, ';')"),
        ("SELECT ... IN (20k literals)", f"SELECT * FROM t WHERE v IN ({values})"),
    ):
        seconds = timeit.timeit(lambda sql=sql: classify(sql), number=5) / 5  # type: ignore[misc]
        print(f"{label}, {len(sql) / 1e6:.2f} MB (never cached): {seconds * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
