"""A small certificate authority for the service's TLS: `phalanx ca init`
makes one, `phalanx ca issue NAME` signs a certificate with it, and agents
trust the coordinator through `client_context(ca_file)`.

A team's coordinator usually has no public name a public CA would sign, and
agents must not be told to skip verification; a private CA whose file is
copied to the hosts is the least that works. Keys are ECDSA P-256 (small,
fast, accepted by every TLS stack phalanx meets) and are written owner-only
(0600) before a byte of them is. The CA's key never leaves its folder.

Files in the CA folder: `ca.pem` (the certificate to hand out), `ca-key.pem`
(the secret), and per issued name `<name>.pem` (the certificate followed by
the CA certificate: the chain a server presents) and `<name>-key.pem`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CA_DAYS = 3650
# Within the 825 days macOS and browsers accept for a certificate issued by
# a private CA; renewing is one command.
CERT_DAYS = 825
# Clocks on test hosts are not always in step: a certificate valid from a
# few minutes ago works on a host a little behind.
BACKDATE = dt.timedelta(minutes=5)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


class CAError(Exception):
    """Why a CA could not be made or used, for a one-line message."""


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def init_ca(directory: Path, *, common_name: str = "phalanx CA", days: int = CA_DAYS) -> Issued:
    """A new CA in `directory` (made if missing). An existing CA is never
    overwritten: every certificate it signed would stop being trusted."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    for path in (cert_path, key_path):
        if path.exists():
            raise CAError(f"{path} exists: a CA is already here (remove it to start over)")
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_key(key_path, key)
    _write(cert_path, _pem(cert), 0o644)
    return Issued(cert_path, key_path)


def issue(
    directory: Path,
    name: str,
    *,
    ips: Iterable[str] = (),
    dns: Iterable[str] = (),
    days: int = CERT_DAYS,
    out: Path | None = None,
) -> Issued:
    """A certificate for `name` signed by the CA in `directory`, for use by a
    server and as a client. Its names (SANs) are `name` itself (an IP
    address or a DNS name), and every `ips` and `dns`. Written to `out`
    (default: the CA folder) as `<name>.pem` and `<name>-key.pem`; issuing a
    name again replaces its files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not NAME.fullmatch(name):
        raise CAError(f"{name!r} is not a usable name (letters, digits, '.', '_', '-')")
    ca_cert, ca_key = load_ca(directory)
    alt_names = _alt_names(name, ips, dns)
    key = _new_key()
    public = key.public_key()
    now = _now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder = out if out is not None else directory
    folder.mkdir(parents=True, exist_ok=True)
    issued = Issued(folder / f"{name}.pem", folder / f"{name}-key.pem")
    _write_key(issued.key, key)
    _write(issued.cert, _pem(cert) + _pem(ca_cert), 0o644)
    return issued


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise CAError(
            f"no CA in {directory} ({exc.filename} is missing): run `phalanx ca init`"
        ) from None
    except ValueError as exc:
        raise CAError(f"the CA in {directory} does not load: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CAError(f"{key_path} is not an ECDSA key")
    return cert, key


def client_context(ca_file: Path | str) -> ssl.SSLContext:
    """A TLS client context that trusts only the CA in `ca_file` and checks
    the server's name: what an agent given `--ca FILE` connects with."""
    try:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise CAError(f"{ca_file}: not a usable CA certificate ({exc})") from None


def server_context(cert_file: Path | str, key_file: Path | str) -> ssl.SSLContext:
    """A TLS server context presenting `cert_file` (with its chain) and `key_file`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise CAError(
            f"{cert_file}, {key_file}: not a usable certificate and key ({exc})"
        ) from None
    return context


def _alt_names(name: str, ips: Iterable[str], dns: Iterable[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    found: list[x509.GeneralName] = []

    def add(general: x509.GeneralName) -> None:
        if general not in found:
            found.append(general)

    try:
        add(x509.IPAddress(ipaddress.ip_address(name)))
    except ValueError:
        add(x509.DNSName(name))
    for value in ips:
        try:
            add(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            raise CAError(f"--ip {value!r} is not an IP address") from None
    for value in dns:
        if not NAME.fullmatch(value.removeprefix("*.")):
            raise CAError(f"--dns {value!r} is not a DNS name")
        add(x509.DNSName(value))
    return found


def _new_key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(path, data, 0o600)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write through a new file made with `mode` (whatever the umask), then
    rename it over `path`: a key is never readable by others, not even for
    the moment between writing and a chmod, and a crash leaves no half file."""
    partial = path.with_name(f".{path.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            fd = -1
            file.write(data)
        os.replace(partial, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
