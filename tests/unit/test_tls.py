"""proxy.tls: contexts for both legs, real handshakes between them, rotation, start_tls.

Certificates are made per test with proxy.devcluster.certs (ECDSA, a millisecond each) and
written to tmp_path. Handshakes are real: two threads on a socketpair, one `do_handshake()` on
each end, so every verification rule below is OpenSSL's, not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy import tls
from proxy.config import BackendTlsConfig, Config, ConfigError, MonitorConfig, TlsConfig, UserConfig
from proxy.devcluster.certs import Authority, CertDir, CertFiles, pod_dns_names, subject_alt_names
from proxy.reload import plan_reload

POD = "mysql-0"
POD_FQDN = "mysql-0.mysql-h.default.svc.cluster.local"
OTHER_FQDN = "mysql-1.mysql-h.default.svc.cluster.local"
HANDSHAKE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Pki:
    """Two CAs and leaves on disk: `ca` signs everything except `stranger`."""

    root: Path
    ca: Authority
    ca_file: Path
    pod: CertFiles  # server cert for mysql-0 (FQDN + 127.0.0.10)
    proxy: CertFiles  # server cert for 127.0.0.1 / localhost
    client: CertFiles  # client cert from `ca`
    stranger: CertFiles  # server cert for mysql-0, but from another CA
    stranger_client: CertFiles  # client cert from another CA
    other_ca_file: Path


def _write(authority: Authority, root: Path, name: str, **kwargs: object) -> CertFiles:
    files = CertFiles(root / f"{name}.pem", root / f"{name}-key.pem")
    return authority.issue(name, **kwargs).write(files)  # type: ignore[arg-type]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, other = Authority.create("test CA"), Authority.create("another CA")
    ca_file, other_ca_file = tmp_path / "ca.pem", tmp_path / "other-ca.pem"
    ca_file.write_bytes(_pem(ca))
    other_ca_file.write_bytes(_pem(other))
    pod_names = {"dns_names": pod_dns_names(POD), "ip_addresses": ["127.0.0.10"]}
    return Pki(
        root=tmp_path,
        ca=ca,
        ca_file=ca_file,
        pod=_write(ca, tmp_path, "pod", **pod_names),
        proxy=_write(ca, tmp_path, "proxy", dns_names=["localhost"], ip_addresses=["127.0.0.1"]),
        client=_write(ca, tmp_path, "client", server=False, client=True),
        stranger=_write(other, tmp_path, "stranger", **pod_names),
        stranger_client=_write(other, tmp_path, "stranger-client", server=False, client=True),
        other_ca_file=other_ca_file,
    )


def _pem(authority: Authority) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return authority.cert.public_bytes(serialization.Encoding.PEM)


def server_config(files: CertFiles, **kwargs: object) -> TlsConfig:
    return TlsConfig(cert_file=files.cert, key_file=files.key, **kwargs)  # type: ignore[arg-type]


def server_ctx(files: CertFiles, **kwargs: object) -> ssl.SSLContext:
    context = tls.client_context(server_config(files, **kwargs))
    assert context is not None
    return context


def backend_ctx(
    mode: str, ca_file: Path | None = None, client: CertFiles | None = None
) -> ssl.SSLContext:
    cfg = BackendTlsConfig(
        mode=mode,
        ca_file=ca_file,
        cert_file=client.cert if client else None,
        key_file=client.key if client else None,
    )
    context = tls.backend_context(cfg)
    assert context is not None
    return context


# A decoded peer certificate as ssl's getpeercert() gives it: "subject" and "issuer" are tuples
# of RDNs of (name, value) pairs, "subjectAltName" is (type, value) pairs, the rest are strings.
PeerCert = dict[str, str | tuple[tuple[str, str], ...] | tuple[tuple[tuple[str, str], ...], ...]]


@dataclass
class Outcome:
    """What each end of one handshake saw."""

    client_error: BaseException | None = None
    server_error: BaseException | None = None
    server_cert: PeerCert | None = None  # what the client verified (empty if unverified)
    server_cert_der: bytes | None = None
    client_cert: PeerCert | None = None  # what the server verified
    version: str | None = None

    @property
    def ok(self) -> bool:
        return self.client_error is None and self.server_error is None


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str | None = POD_FQDN
) -> Outcome:
    """A real TLS handshake over a socketpair, server in a thread, then one byte each way."""
    outcome = Outcome()
    left, right = socket.socketpair()
    left.settimeout(HANDSHAKE_TIMEOUT)
    right.settimeout(HANDSHAKE_TIMEOUT)

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as conn:
                outcome.client_cert = conn.getpeercert()
                conn.sendall(conn.recv(1))
        except (OSError, ssl.SSLError) as exc:
            outcome.server_error = exc
            left.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(right, server_hostname=server_hostname) as conn:
            outcome.server_cert = conn.getpeercert()
            outcome.server_cert_der = conn.getpeercert(binary_form=True)
            outcome.version = conn.version()
            conn.sendall(b"x")
            assert conn.recv(1) == b"x"
    except (OSError, ssl.SSLError) as exc:
        outcome.client_error = exc
        right.close()
    thread.join(HANDSHAKE_TIMEOUT)
    return outcome


# --- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "may", "needs"),
    [
        ("disabled", False, False),
        ("preferred", True, False),
        ("required", True, True),
        ("verify_ca", True, True),
        ("verify_identity", True, True),
    ],
)
def test_mode_helpers(mode: str, may: bool, needs: bool) -> None:
    assert tls.may_use_tls(mode) is may
    assert tls.needs_tls(mode) is needs


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown backend TLS mode 'VERIFY_CA'"):
        tls.needs_tls("VERIFY_CA")


def test_no_contexts_without_configuration() -> None:
    assert tls.client_context(TlsConfig()) is None
    assert tls.backend_context(BackendTlsConfig()) is None
    assert tls.reloading_client_context(TlsConfig()) is None
    assert tls.reloading_backend_context(BackendTlsConfig()) is None


def test_contexts_insist_on_tls_1_2(pki: Pki) -> None:
    assert server_ctx(pki.proxy).minimum_version is ssl.TLSVersion.TLSv1_2
    for mode in ("preferred", "required", "verify_ca", "verify_identity"):
        assert backend_ctx(mode, pki.ca_file).minimum_version is ssl.TLSVersion.TLSv1_2


def test_a_tls_1_1_client_is_refused(pki: Pki) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    assert not handshake(server_ctx(pki.proxy), old).ok


# --- proxy -> pod -----------------------------------------------------------------------------


def test_verify_identity_accepts_the_pods_fqdn(pki: Pki) -> None:
    outcome = handshake(server_ctx(pki.pod), backend_ctx("verify_identity", pki.ca_file))
    assert outcome.ok, outcome
    assert outcome.version in ("TLSv1.2", "TLSv1.3")
    assert outcome.server_cert and ("DNS", POD_FQDN) in outcome.server_cert["subjectAltName"]


@pytest.mark.parametrize(
    "name", [OTHER_FQDN, "mysql-0.mysql-h.other.svc.cluster.local", "127.0.0.11"]
)
def test_verify_identity_rejects_another_name(pki: Pki, name: str) -> None:
    outcome = handshake(server_ctx(pki.pod), backend_ctx("verify_identity", pki.ca_file), name)
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)
    assert "match" in outcome.client_error.verify_message


def test_verify_identity_needs_a_server_hostname(pki: Pki) -> None:
    with pytest.raises(ValueError, match="server_hostname"):
        handshake(server_ctx(pki.pod), backend_ctx("verify_identity", pki.ca_file), None)


def test_verify_ca_accepts_any_name_from_the_ca(pki: Pki) -> None:
    outcome = handshake(server_ctx(pki.pod), backend_ctx("verify_ca", pki.ca_file), OTHER_FQDN)
    assert outcome.ok, outcome


@pytest.mark.parametrize("mode", ["verify_ca", "verify_identity"])
def test_verify_modes_reject_a_certificate_from_another_ca(pki: Pki, mode: str) -> None:
    outcome = handshake(server_ctx(pki.stranger), backend_ctx(mode, pki.ca_file))
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in outcome.client_error.verify_message


@pytest.mark.parametrize("mode", ["preferred", "required"])
def test_unverified_modes_encrypt_with_any_certificate(pki: Pki, mode: str) -> None:
    # Like MySQL's ssl-mode=REQUIRED: encryption against passive eavesdropping, no identity.
    outcome = handshake(server_ctx(pki.stranger), backend_ctx(mode), "whatever")
    assert outcome.ok, outcome
    assert outcome.server_cert == {}  # nothing was verified


def test_backend_client_certificate_is_presented(pki: Pki) -> None:
    server = server_ctx(pki.pod, ca_file=pki.ca_file)
    outcome = handshake(server, backend_ctx("verify_identity", pki.ca_file, client=pki.client))
    assert outcome.ok, outcome
    assert outcome.client_cert and outcome.client_cert["subject"] == ((("commonName", "client"),),)


# --- application -> proxy ---------------------------------------------------------------------


def test_clients_verify_the_proxy_like_any_mysql_server(pki: Pki) -> None:
    client = ssl.create_default_context(cafile=str(pki.ca_file))
    assert handshake(server_ctx(pki.proxy), client, "localhost").ok
    assert handshake(server_ctx(pki.proxy), client, "127.0.0.1").ok


def test_client_ca_checks_presented_certificates_but_does_not_demand_one(pki: Pki) -> None:
    server = server_ctx(pki.proxy, ca_file=pki.ca_file)
    assert server.verify_mode is ssl.CERT_OPTIONAL

    def client(files: CertFiles | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        if files:
            context.load_cert_chain(files.cert, files.key)
        return context

    verified = handshake(server, client(pki.client), "localhost")
    assert verified.ok, verified
    assert verified.client_cert
    anonymous = handshake(server, client(None), "localhost")
    assert anonymous.ok and anonymous.client_cert is None
    stranger = handshake(server, client(pki.stranger_client), "localhost")
    assert not stranger.ok


def test_without_client_ca_no_client_certificate_is_asked_for(pki: Pki) -> None:
    assert server_ctx(pki.proxy).verify_mode is ssl.CERT_NONE


# --- errors -----------------------------------------------------------------------------------


def one_problem(build: Callable[[], object]) -> str:
    with pytest.raises(ConfigError) as raised:
        build()
    (problem,) = raised.value.problems
    return problem


def test_missing_certificate_names_the_key_and_file(pki: Pki) -> None:
    missing = pki.root / "nope.pem"
    cfg = TlsConfig(cert_file=missing, key_file=pki.proxy.key)
    assert one_problem(lambda: tls.client_context(cfg)) == (
        f"tls.cert_file: cannot read {missing}: No such file or directory"
    )


def test_unreadable_key_names_the_key_and_file(pki: Pki) -> None:
    cfg = TlsConfig(cert_file=pki.proxy.cert, key_file=pki.root)  # a directory: root can't read it
    assert one_problem(lambda: tls.client_context(cfg)) == (
        f"tls.key_file: cannot read {pki.root}: Is a directory"
    )


def test_a_key_that_is_not_the_certificates(pki: Pki) -> None:
    cfg = TlsConfig(cert_file=pki.proxy.cert, key_file=pki.pod.key)
    assert one_problem(lambda: tls.client_context(cfg)) == (
        f"tls.key_file: {pki.pod.key} does not match the certificate {pki.proxy.cert}"
    )


def test_swapped_certificate_and_key(pki: Pki) -> None:
    cfg = TlsConfig(cert_file=pki.proxy.key, key_file=pki.proxy.cert)
    problem = one_problem(lambda: tls.client_context(cfg))
    assert problem.startswith(f"tls.cert_file: {pki.proxy.key} is not a PEM certificate (")


def test_garbage_key(pki: Pki) -> None:
    pki.proxy.key.write_text("not a key\n")
    problem = one_problem(lambda: tls.client_context(server_config(pki.proxy)))
    assert problem.startswith(f"tls.key_file: {pki.proxy.key} is not an unencrypted PEM key (")


def test_bad_ca_files_name_their_key(pki: Pki) -> None:
    empty = pki.root / "empty.pem"
    empty.write_text("")
    problem = one_problem(lambda: backend_ctx("verify_ca", empty))
    assert problem.startswith(f"backend_tls.ca_file: {empty} is not PEM CA certificates (")
    cfg = server_config(pki.proxy, ca_file=pki.root / "missing-ca.pem")
    assert one_problem(lambda: tls.client_context(cfg)) == (
        f"tls.ca_file: cannot read {pki.root / 'missing-ca.pem'}: No such file or directory"
    )


def test_backend_client_key_mismatch_names_backend_tls(pki: Pki) -> None:
    cfg = BackendTlsConfig(mode="required", cert_file=pki.client.cert, key_file=pki.pod.key)
    assert one_problem(lambda: tls.backend_context(cfg)).startswith("backend_tls.key_file: ")


def test_verify_mode_without_ca_built_in_code(pki: Pki) -> None:
    assert one_problem(lambda: tls.backend_context(BackendTlsConfig(mode="verify_ca"))) == (
        "backend_tls.ca_file: required when mode is 'verify_ca'"
    )


# --- rotation ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class SecretMount:
    """A directory laid out like a mounted Kubernetes Secret: tls.crt -> ..data/tls.crt,
    ..data -> ..<version>/; an update writes a new version and swaps ..data atomically."""

    root: Path
    versions: int = 0

    def publish(self, files: CertFiles) -> None:
        self.versions += 1
        version = self.root / f"..v{self.versions}"
        version.mkdir()
        (version / "tls.crt").write_bytes(files.cert.read_bytes())
        (version / "tls.key").write_bytes(files.key.read_bytes())
        link = self.root / "..data_tmp"
        link.symlink_to(version.name)
        os.replace(link, self.root / "..data")
        for name in ("tls.crt", "tls.key"):
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(f"..data/{name}")

    @property
    def config(self) -> TlsConfig:
        return TlsConfig(
            cert_file=self.root / "tls.crt",
            key_file=self.root / "tls.key",
            reload_interval_seconds=10,
        )


@pytest.fixture
def mount(tmp_path: Path) -> SecretMount:
    root = tmp_path / "secret"
    root.mkdir()
    return SecretMount(root)


def served_cert(reloading: tls.ReloadingContext, pki: Pki) -> bytes:
    client = ssl.create_default_context(cafile=str(pki.ca_file))
    outcome = handshake(reloading.current(), client, "localhost")
    assert outcome.ok, outcome
    assert outcome.server_cert_der is not None
    return outcome.server_cert_der


def der(files: CertFiles) -> bytes:
    return ssl.PEM_cert_to_DER_cert(files.cert.read_text())


def test_reload_picks_up_a_rotated_secret_after_the_interval(pki: Pki, mount: SecretMount) -> None:
    mount.publish(pki.proxy)
    clock = FakeClock()
    reloading = tls.reloading_client_context(mount.config, clock=clock)
    assert reloading is not None
    assert served_cert(reloading, pki) == der(pki.proxy)

    renewed = _write(pki.ca, pki.root, "renewed", dns_names=["localhost"])
    mount.publish(renewed)
    clock.now += 9.9
    assert served_cert(reloading, pki) == der(pki.proxy)  # not looked at yet
    clock.now += 0.1
    assert served_cert(reloading, pki) == der(renewed)
    assert reloading.reloads == 1


def test_an_unchanged_file_is_not_reloaded(pki: Pki, mount: SecretMount) -> None:
    mount.publish(pki.proxy)
    clock = FakeClock()
    reloading = tls.reloading_client_context(mount.config, clock=clock)
    assert reloading is not None
    first = reloading.current()
    clock.now += 60
    assert reloading.current() is first
    assert reloading.reloads == 0


def test_a_bad_rotation_keeps_the_old_certificate_and_logs_once(
    pki: Pki, mount: SecretMount, caplog: pytest.LogCaptureFixture
) -> None:
    mount.publish(pki.proxy)
    clock = FakeClock()
    reloading = tls.reloading_client_context(mount.config, clock=clock)
    assert reloading is not None
    mismatched = CertFiles(pki.pod.cert, pki.proxy.key)  # a key from another certificate
    mount.publish(mismatched)
    with caplog.at_level(logging.ERROR, "proxy.tls"):
        for _ in range(3):
            clock.now += 10
            assert served_cert(reloading, pki) == der(pki.proxy)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "keeping the previous certificate" in errors[0].getMessage()
    assert "does not match the certificate" in errors[0].getMessage()
    assert reloading.failures == 1

    mount.publish(pki.proxy)  # fixed: the next check takes it
    clock.now += 10
    reloading.current()
    assert reloading.reloads == 1


def test_a_file_in_place_edit_is_noticed(pki: Pki) -> None:
    # No symlinks: an editor or `cp` over the same path changes mtime/size (or inode).
    files = CertFiles(pki.root / "live.pem", pki.root / "live-key.pem")
    files.cert.write_bytes(pki.proxy.cert.read_bytes())
    files.key.write_bytes(pki.proxy.key.read_bytes())
    clock = FakeClock()
    reloading = tls.reloading_client_context(server_config(files), clock=clock)
    assert reloading is not None
    renewed = _write(pki.ca, pki.root, "renewed", dns_names=["localhost"])
    files.cert.write_bytes(renewed.cert.read_bytes())
    files.key.write_bytes(renewed.key.read_bytes())
    clock.now += 10
    assert served_cert(reloading, pki) == der(renewed)


def test_the_first_load_must_succeed(pki: Pki) -> None:
    cfg = TlsConfig(cert_file=pki.proxy.cert, key_file=pki.pod.key)
    with pytest.raises(ConfigError, match="does not match"):
        tls.reloading_client_context(cfg)


def test_files_changing_during_a_load_are_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("1")
    builds: list[ssl.SSLContext] = []

    def build() -> ssl.SSLContext:
        if len(builds) == 1:  # the rotation is still being written while we load
            path.write_text("333")
        builds.append(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        return builds[-1]

    clock = FakeClock()
    reloading = tls.ReloadingContext(build, [path], interval=1, clock=clock)
    path.write_text("22")
    clock.now += 1
    assert reloading.current() is builds[1]
    clock.now += 1
    assert reloading.current() is builds[2]  # not remembered as loaded: loaded again
    clock.now += 1
    assert reloading.current() is builds[2]
    assert len(builds) == 3


def test_backend_context_reloads_a_rotated_ca(pki: Pki, tmp_path: Path) -> None:
    ca_file = tmp_path / "live-ca.pem"
    ca_file.write_bytes(pki.other_ca_file.read_bytes())
    clock = FakeClock()
    cfg = BackendTlsConfig(mode="verify_identity", ca_file=ca_file)
    reloading = tls.reloading_backend_context(cfg, interval=5, clock=clock)
    assert reloading is not None
    assert not handshake(server_ctx(pki.pod), reloading.current()).ok
    ca_file.write_bytes(pki.ca_file.read_bytes() + b"\n")
    clock.now += 5
    assert handshake(server_ctx(pki.pod), reloading.current()).ok


def test_tls_settings_need_a_restart_to_change() -> None:
    base = Config(
        users=(UserConfig(name="a", password="p"),), monitor=MonitorConfig(user="m", password="p")
    )
    new = dataclasses.replace(
        base,
        tls=TlsConfig(cert_file=Path("/c"), key_file=Path("/k")),
        backend_tls=BackendTlsConfig(mode="preferred"),
    )
    plan = plan_reload(base, new)
    assert plan.needs_restart == ("backend_tls.mode", "tls.cert_file", "tls.key_file")
    assert plan.config.tls == base.tls


# --- start_tls with bytes already read --------------------------------------------------------

PREAMBLE = b"SSLREQ"  # stands in for the MySQL SSLRequest packet


class UpgradingServer(asyncio.Protocol):
    """Reads the preamble, switches to TLS handing over what followed it, then echoes.

    Decrypted data can reach `data_received` before `start_tls()` has returned the new
    transport (the TLS layer delivers what came with the end of the handshake at once), so
    it is kept until the transport is known, as the session will have to do.
    """

    def __init__(self, context: ssl.SSLContext, hand_over: bool) -> None:
        self.context = context
        self.hand_over = hand_over
        self.transport: asyncio.Transport | None = None
        self.upgrading: asyncio.Future[None] | None = None
        self.early = bytearray()  # TLS data that came before start_tls() returned
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.upgrading is None:
            assert data.startswith(PREAMBLE)
            self.pending = data[len(PREAMBLE) :]
            self.upgrading = asyncio.ensure_future(self._upgrade())
        elif not self.done.done():
            self.early += data
        else:
            self.transport.write(data.upper())

    async def _upgrade(self) -> None:
        assert self.transport is not None
        try:
            self.transport = await tls.start_tls(
                self.transport,
                self,
                self.context,
                server_side=True,
                pending=self.pending if self.hand_over else b"",
                handshake_timeout=1.0,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.done.set_exception(exc)
            return
        self.done.set_result(None)
        if self.early:
            self.transport.write(bytes(self.early).upper())


def eager_client(port: int, ca_file: Path) -> bytes:
    """Sends the preamble and the TLS ClientHello in one write, as MySQL clients may."""
    context = ssl.create_default_context(cafile=str(ca_file))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_object = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_TIMEOUT) as sock:
        with pytest.raises(ssl.SSLWantReadError):
            tls_object.do_handshake()
        sock.sendall(PREAMBLE + outgoing.read())  # one segment: both arrive in one read
        _pump(sock, tls_object, incoming, outgoing, tls_object.do_handshake)
        tls_object.write(b"ping")
        sock.sendall(outgoing.read())
        return _pump(sock, tls_object, incoming, outgoing, lambda: tls_object.read(4))


def _pump(
    sock: socket.socket,
    tls_object: ssl.SSLObject,
    incoming: ssl.MemoryBIO,
    outgoing: ssl.MemoryBIO,
    step: Callable[[], object],
) -> bytes:
    while True:
        try:
            result = step()
        except ssl.SSLWantReadError:
            if outgoing.pending:
                sock.sendall(outgoing.read())
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection") from None
            incoming.write(data)
            continue
        if outgoing.pending:
            sock.sendall(outgoing.read())
        return result if isinstance(result, bytes) else b""


async def run_eager_client(context: ssl.SSLContext, ca_file: Path, hand_over: bool) -> bytes:
    loop = asyncio.get_running_loop()
    servers: list[UpgradingServer] = []

    def factory() -> UpgradingServer:
        servers.append(UpgradingServer(context, hand_over))
        return servers[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reply = await asyncio.to_thread(eager_client, port, ca_file)
        await servers[0].done
        assert servers[0].pending, "the ClientHello should have come with the preamble"
        return reply
    finally:
        server.close()
        for upgrading in servers:
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                await upgrading.done


def loop_factories() -> Iterator[object]:
    yield pytest.param(asyncio.new_event_loop, id="asyncio")
    uvloop = pytest.importorskip("uvloop")
    yield pytest.param(uvloop.new_event_loop, id="uvloop")


@pytest.mark.parametrize("loop_factory", list(loop_factories()))
def test_start_tls_hands_over_a_client_hello_read_with_the_request(
    pki: Pki, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        reply = runner.run(run_eager_client(server_ctx(pki.proxy), pki.ca_file, hand_over=True))
    assert reply == b"PING"


def test_without_handing_over_the_handshake_hangs(pki: Pki) -> None:
    # The pitfall start_tls() exists for: plain loop.start_tls() never sees the ClientHello.
    with asyncio.Runner() as runner, pytest.raises((ConnectionError, OSError, TimeoutError)):
        runner.run(run_eager_client(server_ctx(pki.proxy), pki.ca_file, hand_over=False))


# --- the dev cluster's certificate directory --------------------------------------------------


def test_cert_dir_makes_files_once_with_private_keys(tmp_path: Path) -> None:
    certs = CertDir(tmp_path / "tls")
    pod = certs.pod(POD, "127.0.0.10")
    first = pod.cert.read_bytes()
    assert CertDir(tmp_path / "tls").pod(POD, "127.0.0.10").cert.read_bytes() == first
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    for key in tmp_path.glob("tls/*-key.pem"):
        assert key.stat().st_mode & 0o777 == 0o600


def test_a_moved_pod_gets_a_certificate_for_its_new_address(tmp_path: Path) -> None:
    from cryptography import x509

    certs = CertDir(tmp_path / "tls")
    certs.pod(POD, "127.0.0.10")
    moved = certs.pod(POD, "127.0.0.20")
    names, ips = subject_alt_names(x509.load_pem_x509_certificate(moved.cert.read_bytes()))
    assert [str(ip) for ip in ips] == ["127.0.0.20"]
    assert names == pod_dns_names(POD)
    assert names[0] == POD_FQDN


def test_cluster_certificates_verify_as_the_proxy_will(tmp_path: Path) -> None:
    certs = CertDir(tmp_path / "tls")
    pod, proxy = certs.pod(POD, "127.0.0.10"), certs.proxy()
    assert handshake(server_ctx(pod), backend_ctx("verify_identity", certs.ca_file)).ok
    client = backend_ctx("verify_identity", certs.ca_file, client=certs.client())
    assert handshake(server_ctx(proxy, ca_file=certs.ca_file), client, "127.0.0.1").ok
