"""Hostile clients at the socket: a fuzzer that talks to a running rwproxy.

Theory of operation
-------------------
`inputs` describes one hostile connection as a `FuzzInput`: whether it logs in first, then a
list of parts (raw bytes, a mutated HandshakeResponse41, framed or mis-framed commands, a
half-close). Every choice goes through a `Chooser`, so the *same* generator serves hypothesis
(`HypothesisChooser`: examples shrink to a minimal input) and the long run (`RandomChooser`:
a plain `random.Random`, cheap enough for a million inputs).

`client` plays one input against a proxy on a raw socket and judges the answer (the oracle):
every packet the proxy sends parses (an ERR is a well-formed ERR), and the proxy either
answers the sentinel statement sent after the garbage (still in step), or closes the
connection; it never leaves a half-closed client hanging past a bound. `client.liveness`
is the "a fresh client still logs in and runs SELECT 1" check.

`baseline` reads what must return to rest afterwards: sessions, pool connections in use,
asyncio tasks, file descriptors and RSS, either inside an in-process proxy (`make test`,
tests/fuzz/test_socket_fuzz.py) or from outside a `python -m proxy serve` child
(/proc/<pid> and /status; `make fuzz`, tests/fuzz/run.py).
"""
