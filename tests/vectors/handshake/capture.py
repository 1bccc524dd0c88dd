"""Record real MariaDB connection-phase packets as .hex vectors for tests/unit/protocol.

Usage (the local cluster must be up: `rwproxy cluster up`):

    .venv/bin/python tests/vectors/handshake/capture.py [--host 127.0.0.10] [--port 3306]

A small recording relay listens on 127.0.0.1, forwards every byte to the pod and keeps what
went each way. Third-party clients (PyMySQL, the `mariadb` CLI) log in through it; a few
exchanges the clients cannot be made to do (an answer with the "wrong" plugin, which makes
MariaDB send an AuthSwitchRequest) are driven with our own packet builders. Each recorded
packet we want as a vector is written, header included, as `<source>_<packet kind>.hex`:
16 bytes of hex per line, `#` comments on top. The tests pick the parser from the file
name's suffix, so keep the suffixes (`handshake_v10`, `handshake_response`, `ok_track`,
`auth_switch_request`, `err`).

This is a dev tool, not part of the test run; it needs the cluster and writes files.
"""

from __future__ import annotations

import argparse
import datetime
import selectors
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

from proxy.protocol.auth import BackendCredential
from proxy.protocol.framing import Packet, PacketFramer, frame
from proxy.protocol.handshake import ClientEvent, ClientHandshake, Ready
from proxy.protocol.packets import (
    HandshakeResponse41,
    build_handshake_response,
    parse_handshake_v10,
)

HERE = Path(__file__).parent
USER, PASSWORD, DATABASE = "app", "app-password", "app"


@dataclass
class Recording:
    """What crossed one relayed connection: bytes to the server and bytes back."""

    up: bytearray = field(default_factory=bytearray)
    down: bytearray = field(default_factory=bytearray)

    def packets(self, direction: str) -> list[Packet]:
        return PacketFramer(1 << 30).feed(bytes(self.up if direction == "up" else self.down))


class Relay:
    """Accepts connections on 127.0.0.1:<port> and pipes each to the pod, recording it."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.recordings: list[Recording] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            recording = Recording()
            self.recordings.append(recording)
            server = socket.create_connection(self.upstream)
            threading.Thread(
                target=self._pump, args=(client, server, recording), daemon=True
            ).start()

    @staticmethod
    def _pump(client: socket.socket, server: socket.socket, recording: Recording) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, (server, recording.up))
        selector.register(server, selectors.EVENT_READ, (client, recording.down))
        while True:
            for key, _ in selector.select():
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                target, log = key.data
                data = source.recv(65536)
                if not data:
                    client.close()
                    server.close()
                    return
                log += data
                target.sendall(data)


def write_vector(name: str, packet: Packet, comment: str) -> None:
    wire = frame(packet.payload, packet.seq)
    lines = [f"# {line}" for line in comment.strip().splitlines()]
    lines.append(f"# captured by capture.py on {datetime.date.today().isoformat()}")
    lines += [wire[i : i + 16].hex(" ") for i in range(0, len(wire), 16)]
    (HERE / f"{name}.hex").write_text("\n".join(lines) + "\n")
    print(f"wrote {name}.hex ({len(wire)} bytes)")


def run_pymysql(relay: Relay) -> Recording:
    conn = pymysql.connect(
        host="127.0.0.1",
        port=relay.port,
        user=USER,
        password=PASSWORD,
        database=DATABASE,
        ssl_disabled=True,
    )
    conn.close()
    return relay.recordings[-1]


def run_mariadb_cli(relay: Relay) -> Recording:
    subprocess.run(
        [
            "mariadb",
            "--no-defaults",
            "--skip-ssl",
            "-h127.0.0.1",
            f"-P{relay.port}",
            f"-u{USER}",
            f"-p{PASSWORD}",
            DATABASE,
            "-e",
            "select 1",
        ],
        check=True,
        capture_output=True,
    )
    return relay.recordings[-1]


class Wire:
    """A blocking socket that speaks whole packets (for the exchanges we drive ourselves)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.framer = PacketFramer()
        self.pending: list[Packet] = []

    def read(self) -> Packet:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.pending += self.framer.feed(data)
        return self.pending.pop(0)


def run_our_client(relay: Relay, password: str = PASSWORD) -> Recording:
    """Our ClientHandshake logs in, then asks for a few session-tracked OKs."""
    wire = Wire(relay.port)
    handshake = ClientHandshake(USER, BackendCredential(password=password.encode()), DATABASE)
    events: list[ClientEvent] = []
    while not events:
        packet = wire.read()
        events = handshake.receive_data(frame(packet.payload, packet.seq))
        wire.sock.sendall(handshake.data_to_send())
    if isinstance(events[0], Ready):
        for sql in (
            b"SET SESSION session_track_state_change = 1",
            b"SET autocommit = 0",
            b"USE app",
        ):
            wire.sock.sendall(frame(b"\x03" + sql, 0))
            wire.read()
    wire.sock.close()
    return relay.recordings[-1]


def run_plugin_mismatch(relay: Relay) -> Recording:
    """Answer the greeting as a caching_sha2_password client: MariaDB switches us to native."""
    wire = Wire(relay.port)
    greeting = parse_handshake_v10(wire.read().payload)
    caps = ClientHandshake(USER, BackendCredential(password=b"")).wanted & greeting.capabilities
    response = HandshakeResponse41(
        caps, 1 << 24, 45, USER, b"\x00" * 32, None, "caching_sha2_password"
    )
    wire.sock.sendall(frame(build_handshake_response(response), 1))
    wire.read()  # the AuthSwitchRequest, recorded by the relay
    wire.sock.close()
    return relay.recordings[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.10")
    parser.add_argument("--port", type=int, default=3306)
    args = parser.parse_args()
    relay = Relay(args.host, args.port)
    server = f"MariaDB at {args.host}:{args.port}"

    ours = run_our_client(relay)
    greeting = ours.packets("down")[0]
    version = parse_handshake_v10(greeting.payload).server_version
    write_vector("mariadb_handshake_v10", greeting, f"HandshakeV10 from {server} ({version})")
    write_vector(
        "rwproxy_handshake_response",
        ours.packets("up")[0],
        "HandshakeResponse41 from our ClientHandshake (database app, SESSION_TRACK)",
    )
    down = ours.packets("down")
    write_vector("mariadb_login_ok_track", down[1], "OK ending the login (CLIENT_SESSION_TRACK)")
    write_vector(
        "mariadb_state_change_ok_track",
        down[2],
        "OK after SET SESSION session_track_state_change = 1",
    )
    write_vector("mariadb_autocommit_ok_track", down[3], "OK after SET autocommit = 0")
    write_vector("mariadb_use_schema_ok_track", down[4], "OK after USE app")

    pymysql_rec = run_pymysql(relay)
    write_vector(
        "pymysql_handshake_response",
        pymysql_rec.packets("up")[0],
        f"HandshakeResponse41 from PyMySQL {pymysql.VERSION_STRING} (ssl_disabled=True)",
    )
    cli = run_mariadb_cli(relay)
    write_vector(
        "mariadb_cli_handshake_response",
        cli.packets("up")[0],
        "HandshakeResponse41 from the mariadb CLI (Connector/C, --skip-ssl): MariaDB\n"
        "extended capabilities in the filler, since CLIENT_MYSQL is clear",
    )
    denied = run_our_client(relay, password="wrong-password")
    write_vector("mariadb_access_denied_err", denied.packets("down")[1], "ERR for a wrong password")
    mismatch = run_plugin_mismatch(relay)
    write_vector(
        "mariadb_auth_switch_request",
        mismatch.packets("down")[1],
        "AuthSwitchRequest after a response that named caching_sha2_password",
    )


if __name__ == "__main__":
    main()
