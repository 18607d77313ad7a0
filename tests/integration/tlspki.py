# SPDX-License-Identifier: LGPL-2.1-or-later
"""Test certificates for the TLS tests, made with openssl at test time.

Two CAs (the test CA and another one), an intermediate CA under the test
CA, server certificates for 127.0.0.1 and localhost (one from the test CA,
one from the intermediate), client certificates from either CA, a
PKCS#12 file with a password and an encrypted private key. Keys are
ECDSA P-256: handshakes are cheap, so a thousand of them are quick.
"""

from dataclasses import dataclass
from pathlib import Path
import subprocess

P12_PASSWORD = "p12-Passw0rd-for-tests"
KEY_PASSWORD = "key-Passw0rd-for-tests"

SERVER_EXT = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature\n"
    "extendedKeyUsage=serverAuth\n"
    "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
)
CLIENT_EXT = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature\n"
    "extendedKeyUsage=clientAuth\n"
)
INTERMEDIATE_EXT = (
    "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
)


@dataclass(frozen=True)
class Pki:
    """Paths of the test certificates and keys (PEM unless said otherwise)."""

    dir: Path
    ca: Path
    other_ca: Path
    intermediate: Path
    server_cert: Path
    server_key: Path
    combined: Path  # server certificate and key in one file
    leaf_cert: Path  # issued by the intermediate
    leaf_key: Path
    client_cert: Path  # issued by the test CA, CN "device-1"
    client_key: Path
    other_client_cert: Path  # issued by the other CA
    other_client_key: Path
    p12: Path  # the server certificate, key and CA, DER, with P12_PASSWORD
    encrypted_key: Path  # the server key, PKCS#8 encrypted with KEY_PASSWORD

    def key_body_lines(self, key: Path | None = None) -> list[str]:
        """The base64 lines of a private key: what must never leak."""
        text = (key or self.server_key).read_text()
        return [line for line in text.splitlines() if line and not line.startswith("-----")]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _key(d: Path, name: str) -> str:
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        f"{name}.key",
        cwd=d,
    )
    return f"{name}.key"


def _ca(d: Path, name: str, subject: str) -> None:
    _key(d, name)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        f"{name}.key",
        "-subj",
        subject,
        "-days",
        "3",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        f"{name}.pem",
        cwd=d,
    )


def _issue(d: Path, name: str, subject: str, issuer: str, ext: str, serial: int) -> None:
    _key(d, name)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{issuer}.pem",
        "-CAkey",
        f"{issuer}.key",
        "-set_serial",
        str(serial),
        "-days",
        "3",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.pem",
        cwd=d,
    )


def make_pki(d: Path) -> Pki:
    """Make every certificate and key in the directory d."""
    _ca(d, "ca", "/O=sockbridge tests/CN=sockbridge test CA")
    _ca(d, "other-ca", "/O=elsewhere/CN=another CA")
    _issue(d, "intermediate", "/CN=sockbridge test intermediate", "ca", INTERMEDIATE_EXT, 10)
    _issue(d, "server", "/CN=localhost", "ca", SERVER_EXT, 11)
    _issue(d, "leaf", "/CN=localhost via the intermediate", "intermediate", SERVER_EXT, 12)
    _issue(d, "client", "/O=sockbridge tests/CN=device-1", "ca", CLIENT_EXT, 13)
    _issue(d, "other-client", "/CN=stranger", "other-ca", CLIENT_EXT, 14)
    (d / "combined.pem").write_text((d / "server.pem").read_text() + (d / "server.key").read_text())
    _openssl(
        "pkcs12",
        "-export",
        "-in",
        "server.pem",
        "-inkey",
        "server.key",
        "-certfile",
        "ca.pem",
        "-passout",
        f"pass:{P12_PASSWORD}",
        "-out",
        "server.p12",
        cwd=d,
    )
    _openssl(
        "pkey",
        "-in",
        "server.key",
        "-aes256",
        "-passout",
        f"pass:{KEY_PASSWORD}",
        "-out",
        "encrypted.key",
        cwd=d,
    )
    for f in d.iterdir():
        f.chmod(0o644)  # the daemon may run as another user
    d.chmod(0o755)
    return Pki(
        dir=d,
        ca=d / "ca.pem",
        other_ca=d / "other-ca.pem",
        intermediate=d / "intermediate.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        combined=d / "combined.pem",
        leaf_cert=d / "leaf.pem",
        leaf_key=d / "leaf.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        other_client_cert=d / "other-client.pem",
        other_client_key=d / "other-client.key",
        p12=d / "server.p12",
        encrypted_key=d / "encrypted.key",
    )
