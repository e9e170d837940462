"""`phalanx ca`: a CA and the certificates it signs, checked over a real TLS socket."""

from __future__ import annotations

import asyncio
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.cli import main
from phalanx.service.ca import CAError, client_context, init_ca, issue, server_context


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> bytes:
    """Serve one TLS connection on a free port and talk to it as `host`."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello over tls\n")
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server)
    port = listening.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname=host
            )
            line = await reader.readline()
            writer.close()
            return line
    finally:
        listening.close()
        await listening.wait_closed()


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    folder = tmp_path / "ca"
    init_ca(folder)
    return folder


async def test_a_server_certificate_is_trusted_through_the_ca_and_its_names(ca: Path) -> None:
    made = issue(ca, "localhost", ips=["127.0.0.1"])
    server = server_context(made.cert, made.key)
    client = client_context(ca / "ca.pem")
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    assert await _handshake(server, client, "localhost") == b"hello over tls\n"
    assert await _handshake(server, client, "127.0.0.1") == b"hello over tls\n"


async def test_a_name_not_on_the_certificate_fails_the_hostname_check(ca: Path) -> None:
    made = issue(ca, "localhost", ips=["127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError, match=r"[Hh]ostname mismatch|doesn't match"):
        await _handshake(
            server_context(made.cert, made.key),
            client_context(ca / "ca.pem"),
            "coordinator.example",
        )


async def test_a_client_trusting_another_ca_refuses_the_server(tmp_path: Path, ca: Path) -> None:
    made = issue(ca, "localhost", ips=["127.0.0.1"])
    other = tmp_path / "other"
    init_ca(other)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await _handshake(
            server_context(made.cert, made.key), client_context(other / "ca.pem"), "localhost"
        )


def test_keys_are_owner_only_and_certificates_readable(tmp_path: Path) -> None:
    folder = tmp_path / "ca"
    made = init_ca(folder)
    assert _mode(made.key) == 0o600
    assert _mode(made.cert) == 0o644
    leaf = issue(folder, "srv1.xrd.test", dns=["srv1"], out=tmp_path / "certs")
    assert leaf.cert == tmp_path / "certs" / "srv1.xrd.test.pem"
    assert _mode(leaf.key) == 0o600
    assert not list(folder.glob(".*partial")) and not list((tmp_path / "certs").glob(".*"))


def test_an_existing_ca_is_never_overwritten_and_a_missing_one_is_named(
    tmp_path: Path, ca: Path
) -> None:
    before = (ca / "ca-key.pem").read_bytes()
    with pytest.raises(CAError, match="already here"):
        init_ca(ca)
    assert (ca / "ca-key.pem").read_bytes() == before
    with pytest.raises(CAError, match="phalanx ca init"):
        issue(tmp_path / "nowhere", "localhost")
    with pytest.raises(CAError, match="not an IP address"):
        issue(ca, "localhost", ips=["localhost"])
    with pytest.raises(CAError, match="not a usable name"):
        issue(ca, "../escape")


def test_the_cli_makes_a_ca_and_a_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "ca"
    assert main(["ca", "init", "--dir", str(folder)]) == 0
    assert main(["ca", "issue", "127.0.0.1", "--dir", str(folder), "--dns", "localhost"]) == 0
    out = capsys.readouterr().out
    assert str(folder / "ca.pem") in out and str(folder / "127.0.0.1.pem") in out
    # a fresh interpreter loads what the CLI wrote: the chain and key match, the CA parses
    done = subprocess.run(
        [sys.executable, "-c", "import ssl,sys; c=ssl.create_default_context(cafile=sys.argv[1]); "
         "c.load_cert_chain(sys.argv[2], sys.argv[3])",
         str(folder / "ca.pem"), str(folder / "127.0.0.1.pem"), str(folder / "127.0.0.1-key.pem")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert main(["ca", "init", "--dir", str(folder)]) == 2
    assert "already here" in capsys.readouterr().err
