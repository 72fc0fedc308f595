"""Certificates with the validity a test needs (expired, not yet valid), which
`fleet-certs.sh` (issuing for today, as an operator does) cannot make."""

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DAY = timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Pki:
    """A CA in `directory`; `issue` writes NAME.crt and NAME.key (mode 600) beside it."""

    directory: Path
    ca_name: str = "test-ca"

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self._ca = (
            x509.CertificateBuilder()
            .subject_name(_name(self.ca_name))
            .issuer_name(_name(self.ca_name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - 30 * DAY)
            .not_valid_after(now + 3650 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca.write_bytes(self._ca.public_bytes(serialization.Encoding.PEM))

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    def issue(
        self,
        name: str,
        cn: str,
        *,
        starts: timedelta = -DAY,
        ends: timedelta = 400 * DAY,
        usage: list[x509.ObjectIdentifier] | None = None,
    ) -> tuple[Path, Path]:
        """A leaf valid from now+`starts` to now+`ends`, for localhost and 127.0.0.1 (a
        broker) or a client named `cn`: (certificate, key). `usage`: its extended key
        usage (None: none, any use)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self._ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + starts)
            .not_valid_after(now + ends)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        crt, pem = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pem.chmod(0o600)
        return crt, pem

    def crl(self, *, revoked: tuple[Path, ...] = (), next_update: timedelta = DAY) -> Path:
        """The CA's CRL (crl.pem beside it) revoking the certificates `revoked`, past its
        next update when `next_update` is negative."""
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._ca.subject)
            .last_update(now - 2 * DAY)
            .next_update(now + next_update)
        )
        for path in revoked:
            serial = x509.load_pem_x509_certificate(path.read_bytes()).serial_number
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - DAY)
            builder = builder.add_revoked_certificate(entry.build())
        out = self.directory / "crl.pem"
        out.write_bytes(builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        return out
