"""``serve --ssl-certfile/--ssl-keyfile`` serves HTTPS."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import AUTH, RunningServer


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_with_the_given_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    args = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    trusted = ssl.create_default_context(cafile=str(cert))
    server = RunningServer(tmp_path / "data", args=args, verify=trusted)
    try:
        assert server.url.startswith("https://")
        r = httpx.get(f"{server.url}/api/v1/models", headers=AUTH, verify=trusted)
        assert r.status_code == 200 and r.json() == []
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/v2/health/live", verify=ssl.create_default_context())  # untrusted cert
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"http://127.0.0.1:{server.port}/v2/health/live")  # no plain HTTP on that port
    finally:
        server.stop()


def test_half_a_tls_setup_is_refused(tmp_path: Path) -> None:
    from modelport.errors import ConfigError
    from modelport.settings import Settings

    with pytest.raises(ConfigError, match="both"):
        Settings(data_dir=tmp_path, ssl_certfile=tmp_path / "cert.pem").check()
