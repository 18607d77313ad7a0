"""Certificates for the TLS tests, made at test time with cryptography.

cryptography comes with Home Assistant: no openssl binary is needed in the
Debian roots the tests run in. The files are PEM, in a directory of the
test's own; sockbridged reads them by path, as it does on a real install.
"""

from __future__ import annotations

from dataclasses import dataclass
import datetime
import ipaddress
from pathlib import Path
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

_Key = ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: _Key, issuer: tuple[str, _Key] | None, *, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # Python 3.13+ verifies strictly (VERIFY_X509_STRICT): both key ids.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: _Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Pki:
    """A CA, a server and a client certificate it issued, and a foreign client."""

    directory: Path
    ca: Path
    server_certificate: Path
    server_key: Path
    server_p12: Path
    p12_password: str
    client_certificate: Path
    client_key: Path
    foreign_certificate: Path
    foreign_key: Path

    def client_context(self, *, certificate: bool = False, foreign: bool = False) -> ssl.SSLContext:
        """A client's context that trusts the CA, with a client certificate if asked."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if certificate:
            context.load_cert_chain(self.client_certificate, self.client_key)
        elif foreign:
            context.load_cert_chain(self.foreign_certificate, self.foreign_key)
        return context


def make_pki(directory: Path) -> Pki:
    """Write the test certificates and keys into directory."""
    directory.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("sockbridge test CA", ca_key, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate("localhost", server_key, ("sockbridge test CA", ca_key), ca=False)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate("a device", client_key, ("sockbridge test CA", ca_key), ca=False)
    foreign_ca_key = ec.generate_private_key(ec.SECP256R1())
    foreign_key = ec.generate_private_key(ec.SECP256R1())
    foreign = _certificate("a stranger", foreign_key, ("another CA", foreign_ca_key), ca=False)
    password = "p12 secret password"
    p12 = pkcs12.serialize_key_and_certificates(
        b"server",
        server_key,
        server,
        [ca],
        serialization.BestAvailableEncryption(password.encode()),
    )
    return Pki(
        directory=directory,
        ca=write("ca.pem", _pem(ca)),
        server_certificate=write("server.pem", _pem(server)),
        server_key=write("server.key", _key_pem(server_key)),
        server_p12=write("server.p12", p12),
        p12_password=password,
        client_certificate=write("client.pem", _pem(client)),
        client_key=write("client.key", _key_pem(client_key)),
        foreign_certificate=write("foreign.pem", _pem(foreign)),
        foreign_key=write("foreign.key", _key_pem(foreign_key)),
    )
