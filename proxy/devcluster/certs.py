"""Certificates for the dev cluster and the tests: one CA, a server certificate per pod, one for
the proxy, one for clients.

Theory of operation
-------------------
In Kubernetes a pod's certificate names its DNS name (cert-manager or the operator issues it), and
a client that verifies identity checks ``mysql-0.mysql-h.default.svc.cluster.local``, never an IP.
This module makes the same thing on loopback: `Authority.issue()` signs leaf certificates whose
subjectAltNames are given explicitly, and `pod_dns_names()` lists what a headless Service's pod
answers to (the FQDN and its shorter search-path forms). A pod certificate also carries the pod's
current IP, so `mariadb --ssl-verify-server-cert -h 127.0.0.10` works; `CertDir.pod()` issues a new
one when the pod has moved to an address its certificate does not name.

Keys are ECDSA P-256: generating one takes well under a millisecond (an RSA-2048 key takes tens of
milliseconds), and MariaDB (OpenSSL), Python's ssl and every MySQL client accept them. Certificates
are X.509 v3 with the extensions strict verifiers insist on (basicConstraints, keyUsage,
extendedKeyUsage, subject/authority key identifiers).

Files are PEM. Private keys are created 0600 and every file is written to a temporary name and
renamed, so a reader (a mariadbd starting, a proxy reloading) never sees half a file. `CertDir`
lays the files out in one directory and reuses them across runs: the CA is made once per
directory; leaves are re-issued only when missing, no longer valid, signed by another CA or (for a
pod) not naming its address.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxy.devcluster import spec

logger = logging.getLogger(__name__)

CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 825
# Re-issue a leaf this long before it expires, so a cluster kept for years never serves a
# certificate that runs out in the middle of a test run.
RENEW_BEFORE = datetime.timedelta(days=30)
# Certificates start to be valid a little in the past: a peer whose clock is slightly behind
# must not see a certificate "from the future".
_BACKDATE = datetime.timedelta(hours=1)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class CertFiles:
    """Where one certificate (PEM) and its private key (PEM, 0600) live."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, in memory."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, files: CertFiles) -> CertFiles:
        """Write both as PEM: the key 0600, each atomically; returns ``files``."""
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomically(files.key, key_pem, mode=0o600)
        _write_atomically(files.cert, self.cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return files


@dataclass(frozen=True, slots=True)
class Authority:
    """A CA that signs leaf certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str = "rwproxy dev cluster CA") -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        public = key.public_key()
        builder = (
            _base_builder(name, public, CA_VALID_DAYS)
            .issuer_name(name)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False
            )
        )
        return cls(builder.sign(key, hashes.SHA256()), key)

    @classmethod
    def load(cls, files: CertFiles) -> Authority:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{files.key}: expected an EC private key")
        return cls(cert, key)

    def issue(
        self,
        common_name: str,
        *,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str | IpAddress] = (),
        server: bool = True,
        client: bool = False,
        valid_days: int = LEAF_VALID_DAYS,
        not_before: datetime.datetime | None = None,
    ) -> Issued:
        """A new key and a certificate for it, signed by this CA.

        ``server``/``client`` choose the extendedKeyUsage (TLS server and/or client auth).
        ``not_before`` (default: an hour ago) lets tests make certificates that are not yet, or
        no longer, valid.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] * client
        builder = (
            _base_builder(subject, key.public_key(), valid_days, not_before)
            .issuer_name(self.cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        names = _general_names(dns_names, ip_addresses)
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return Issued(builder.sign(self.key, hashes.SHA256()), key)

    def signed(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` was issued by this CA (name and signature)."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def _base_builder(
    subject: x509.Name,
    public: ec.EllipticCurvePublicKey,
    valid_days: int,
    not_before: datetime.datetime | None = None,
) -> x509.CertificateBuilder:
    start = not_before or datetime.datetime.now(datetime.UTC) - _BACKDATE
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=valid_days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(
    dns_names: Iterable[str], ip_addresses: Iterable[str | IpAddress]
) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    return names


def pod_dns_names(pod: str) -> list[str]:
    """What a StatefulSet pod behind the headless Service is called, longest first:
    ``mysql-0.mysql-h.default.svc.cluster.local`` down to ``mysql-0``."""
    in_namespace = f"{pod}.{spec.SERVICE}.{spec.NAMESPACE}"
    return [spec.pod_fqdn(pod), f"{in_namespace}.svc", in_namespace, f"{pod}.{spec.SERVICE}", pod]


def subject_alt_names(cert: x509.Certificate) -> tuple[list[str], list[IpAddress]]:
    """The DNS names and IP addresses a certificate is valid for."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    values = san.get_values_for_type(x509.IPAddress)
    ips = [ip for ip in values if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)]
    return san.get_values_for_type(x509.DNSName), ips


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    # Created with its final mode: a key is never readable by others, not even for an instant.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)


class CertDir:
    """The dev cluster's certificates in one directory (``<state dir>/tls``), made on demand.

    ``ca.pem`` / ``ca-key.pem``, ``<pod>.pem`` / ``<pod>-key.pem`` per pod, ``proxy.pem`` /
    ``proxy-key.pem`` (127.0.0.1, ::1, localhost) and ``client.pem`` / ``client-key.pem``.
    Callers hold the cluster's state lock, so two commands never write here at once.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._authority: Authority | None = None

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    def files(self, name: str) -> CertFiles:
        return CertFiles(self.root / f"{name}.pem", self.root / f"{name}-key.pem")

    def authority(self) -> Authority:
        """The directory's CA: loaded if it exists, created (once) if not."""
        if self._authority is None:
            files = self.files("ca")
            if files.cert.exists() and files.key.exists():
                self._authority = Authority.load(files)
            else:
                self.root.mkdir(parents=True, exist_ok=True)
                os.chmod(self.root, 0o700)
                self._authority = Authority.create()
                Issued(self._authority.cert, self._authority.key).write(files)
                logger.info("created a CA in %s", files.cert)
        return self._authority

    def pod(self, pod: str, address: str) -> CertFiles:
        """The pod's server certificate, valid for its DNS names and ``address``."""
        return self._leaf(pod, dns_names=pod_dns_names(pod), ip_addresses=[address], server=True)

    def proxy(self) -> CertFiles:
        """A server certificate for a proxy listening on loopback."""
        return self._leaf(
            "proxy", dns_names=["localhost"], ip_addresses=["127.0.0.1", "::1"], server=True
        )

    def client(self) -> CertFiles:
        """A client certificate (CN ``rwproxy-client``), for mutual TLS."""
        return self._leaf("client", client=True, server=False, common_name="rwproxy-client")

    def _leaf(
        self,
        name: str,
        *,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        server: bool = True,
        client: bool = False,
        common_name: str | None = None,
    ) -> CertFiles:
        files = self.files(name)
        authority = self.authority()
        if self._reusable(files, authority, ip_addresses):
            return files
        issued = authority.issue(
            common_name or (dns_names[0] if dns_names else name),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            server=server,
            client=client,
        )
        logger.info("issued %s for %s", files.cert, ", ".join([*dns_names, *ip_addresses]))
        return issued.write(files)

    @staticmethod
    def _reusable(files: CertFiles, authority: Authority, ip_addresses: Sequence[str]) -> bool:
        if not (files.cert.exists() and files.key.exists()):
            return False
        try:
            cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        except ValueError:
            return False
        fresh = cert.not_valid_after_utc - RENEW_BEFORE > datetime.datetime.now(datetime.UTC)
        _, ips = subject_alt_names(cert)
        named = all(ipaddress.ip_address(ip) in ips for ip in ip_addresses)
        return fresh and named and authority.signed(cert)


__all__ = [
    "Authority",
    "CertDir",
    "CertFiles",
    "Issued",
    "pod_dns_names",
    "subject_alt_names",
]
