"""Test credentials: a throwaway PKI made with the openssl CLI, and tokens made with the server's CLI."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conftest import BINARY


@dataclass(frozen=True)
class Pki:
    """A test CA and what it signed: a server certificate for 127.0.0.1 and localhost, a client
    certificate (mutual TLS), and a second CA that signed nothing the server trusts."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    def server_args(self, *, mutual: bool = False) -> list[str]:
        args = ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key)]
        return [*args, "--tls-client-ca", str(self.ca)] if mutual else args


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {result.stderr}")


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    (directory / f"{name}.cnf").write_text(
        "[req]\ndistinguished_name = dn\nx509_extensions = ca\nprompt = no\n"
        f"[dn]\nCN = switchboard test {name}\n"
        "[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n"
        "subjectKeyIdentifier = hash\n"
    )
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-config", f"{name}.cnf",
        cwd=directory,
    )
    return directory / f"{name}.pem", directory / f"{name}.key"


def _leaf(directory: Path, name: str, ca: str, serial: int, extensions: str) -> tuple[Path, Path]:
    (directory / f"{name}.ext").write_text(
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
        "authorityKeyIdentifier = keyid\n" + extensions
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=directory,
    )
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-set_serial", str(serial), "-days", "2", "-extfile", f"{name}.ext",
        "-out", f"{name}.pem",
        cwd=directory,
    )
    return directory / f"{name}.pem", directory / f"{name}.key"


def make_pki(directory: Path) -> Pki:
    if shutil.which("openssl") is None:
        raise RuntimeError("the TLS tests make their certificates with the openssl command, which is missing")
    directory.mkdir(parents=True, exist_ok=True)
    ca, _ = _ca(directory, "ca")
    other_ca, _ = _ca(directory, "other-ca")
    server_cert, server_key = _leaf(
        directory, "server", "ca", 2, "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n"
    )
    client_cert, client_key = _leaf(
        directory,
        "client",
        "ca",
        3,
        "extendedKeyUsage = clientAuth\nsubjectAltName = URI:spiffe://switchboard.test/orchestrator\n",
    )
    return Pki(ca, server_cert, server_key, client_cert, client_key, other_ca)


def _switchboard(*args: str) -> str:
    result = subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"switchboard {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class SigningKey:
    """`switchboard token keygen`'s files: the key that issues tokens and its public part, which
    is all a server needs (`serve --auth-key-file`)."""

    private: Path
    public: Path

    def server_args(self) -> list[str]:
        return ["--auth-key-file", str(self.public)]


def keygen(path: Path) -> SigningKey:
    _switchboard("token", "keygen", "--out", str(path))
    return SigningKey(path, path.with_name(path.name + ".pub"))


def issue(key: SigningKey, role: str, *args: str, ttl: str = "1h") -> str:
    """`switchboard token issue`: one token, e.g. `issue(key, "agent", "--specialist", "fe-1")`."""
    token = _switchboard("token", "issue", "--key-file", str(key.private), "--role", role, "--ttl", ttl, *args).strip()
    if not token or any(c.isspace() for c in token):
        raise RuntimeError(f"switchboard token issue printed {token!r}, want one token")
    return token
