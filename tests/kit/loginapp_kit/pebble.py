"""An ACME server for tests: Debian's Pebble, with pebble-challtestsrv as its DNS.

challtestsrv answers every A query with one address (the edge the test points
the names at), so Pebble's HTTP-01 validation reaches that edge's nginx on port
80. Pebble makes new roots on every start: ``roots`` collects each one, the
bundle clients and the tls role trust (``tls_ca_file``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ACME_PORT = 14000
MANAGEMENT_PORT = 15000
DNS_PORT = 8053
CHALLTESTSRV_MANAGEMENT_PORT = 8055


def _api_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for Pebble's HTTPS API on 127.0.0.1 (what tls_acme_ca_bundle trusts)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble api")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "api.crt", directory / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


class Pebble:
    """Pebble on 127.0.0.1:14000 validating HTTP-01 on port 80 of ``edge_address``."""

    def __init__(self, edge_address: str) -> None:
        self.edge_address = edge_address
        self.dir = Path(tempfile.mkdtemp(prefix="loginapp-pebble-"))
        self.api_cert, api_key = _api_certificate(self.dir)
        self.config = self.dir / "pebble.json"
        self.config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{ACME_PORT}", "managementListenAddress": f"127.0.0.1:{MANAGEMENT_PORT}",
            "certificate": str(self.api_cert), "privateKey": str(api_key),
            "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }}))  # fmt: skip
        self.roots = self.dir / "roots.pem"
        self.roots.write_text("")
        self._pebble: subprocess.Popen | None = None
        self._dns: subprocess.Popen | None = None

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{ACME_PORT}/dir"

    def _api(self, url: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.api_cert))
        with urllib.request.urlopen(url, context=context, timeout=5) as response:  # noqa: S310 (https, ours)
            return response.read()

    def _log(self, name: str):
        return (self.dir / f"{name}.log").open("ab")

    def start(self) -> Pebble:
        if self._dns is None:
            self._dns = subprocess.Popen(
                ["pebble-challtestsrv", "-defaultIPv4", self.edge_address, "-defaultIPv6", "",
                 "-dns01", f"127.0.0.1:{DNS_PORT}", "-management", f"127.0.0.1:{CHALLTESTSRV_MANAGEMENT_PORT}",
                 "-http01", "", "-https01", "", "-tlsalpn01", ""],
                stdout=self._log("challtestsrv"), stderr=subprocess.STDOUT,
            )  # fmt: skip
        # No artificial validation delay, no nonce rejections: the test measures the project, not Pebble's chaos.
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        self._pebble = subprocess.Popen(
            ["pebble", "-config", str(self.config), "-dnsserver", f"127.0.0.1:{DNS_PORT}"],
            stdout=self._log("pebble"), stderr=subprocess.STDOUT, env=env, cwd=self.dir,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                self._api(self.directory_url)
                break
            except OSError:
                if time.monotonic() > deadline or self._pebble.poll() is not None:
                    raise RuntimeError(f"Pebble did not start: {self.log_tail()}") from None
                time.sleep(0.3)
        # This run's root, added to what earlier runs issued from.
        root = self._api(f"https://127.0.0.1:{MANAGEMENT_PORT}/roots/0").decode()
        self.roots.write_text(self.roots.read_text() + root)
        return self

    def client_context(self) -> ssl.SSLContext:
        """A client trusting only Pebble's roots: what a browser trusting Let's Encrypt is to the real thing."""
        return ssl.create_default_context(cafile=str(self.roots))

    def point_dns_at(self, address: str) -> None:
        """Answer every A query with ``address`` from now on: the CA reaches another edge."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{CHALLTESTSRV_MANAGEMENT_PORT}/set-default-ipv4",
            data=json.dumps({"ip": address}).encode(), method="POST",
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 (loopback, ours)
            pass
        self.edge_address = address

    def stop_ca(self) -> None:
        """Stop Pebble (the ACME server) and keep its DNS."""
        if self._pebble is not None:
            self._pebble.terminate()
            self._pebble.wait(timeout=15)
            self._pebble = None

    def stop(self) -> None:
        self.stop_ca()
        if self._dns is not None:
            self._dns.terminate()
            self._dns.wait(timeout=15)
            self._dns = None

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "pebble.log").read_text(errors="replace")[-chars:]
        return ""

    def tls_vars(self, name: str, email: str = "ops@loginapp.test") -> dict[str, str]:
        """The tls role's acme inputs for ``name`` against this Pebble."""
        return {
            "tls_mode": "acme", "tls_acme_directory": self.directory_url, "tls_acme_email": email,
            "tls_acme_ca_bundle": str(self.api_cert), "tls_ca_file": str(self.roots), "stack_public_host": name,
        }  # fmt: skip


@contextlib.contextmanager
def resolve_on_controller(name: str, address: str):
    """``name`` -> ``address`` in this machine's /etc/hosts while the block runs (as public DNS would answer).

    The line goes first (the resolver takes the first match), so an inner block overrides an outer one.
    """
    hosts = Path("/etc/hosts")
    original = hosts.read_text()
    hosts.write_text(f"{address} {name}\n" + original)  # in place: /etc/hosts may be a bind mount
    try:
        yield
    finally:
        hosts.write_text(original)
