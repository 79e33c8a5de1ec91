"""The built container image, run read-only against a real PostgreSQL.

Skipped unless LOGINAPP_IMAGE names an image, e.g.
    LOGINAPP_IMAGE=loginapp:latest pytest -q app -m image
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from loginapp_kit import REPO
from loginapp_kit.html import csrf_token
from loginapp_kit.pgserver import PostgresServer, find_bin, free_port

IMAGE = os.environ.get("LOGINAPP_IMAGE")
pytestmark = [
    pytest.mark.image,
    pytest.mark.skipif(not IMAGE, reason="set LOGINAPP_IMAGE to a built loginapp image"),
    pytest.mark.skipif(not shutil.which("docker"), reason="docker CLI not found"),
]


class Browser:
    """Just enough of a browser: one cookie, forwarded as if nginx terminated TLS."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie: str | None = None

    def request(self, method: str, path: str, form: dict[str, str] | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "198.51.100.23",
            "Referer": f"https://127.0.0.1:{self.port}/login",
        }
        if self.cookie:
            headers["Cookie"] = self.cookie
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        set_cookie = response.getheader("Set-Cookie")
        if set_cookie:
            self.cookie = set_cookie.split(";", 1)[0]
        conn.close()
        return response, text

    def csrf(self, path: str) -> str:
        _, text = self.request("GET", path)
        return csrf_token(text)


@pytest.fixture
def container() -> Iterator[int]:
    if not find_bin("initdb"):
        pytest.skip("needs initdb for the PostgreSQL server the container talks to")
    server = PostgresServer().start()
    server.create_database("loginapp")
    secrets_dir = Path(tempfile.mkdtemp(prefix="loginapp-secrets-"))
    secrets_dir.chmod(0o755)
    (secrets_dir / "secret_key").write_text("x7" * 32 + "\n")
    (secrets_dir / "db_password").write_text("unused-with-trust-auth\n")
    for f in secrets_dir.iterdir():
        f.chmod(0o644)
    port = free_port()
    name = f"loginapp-test-{port}"
    subprocess.run(
        [
            "docker", "run", "-d", "--name", name, "--network", "host",
            "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "-v", f"{secrets_dir}:/run/secrets:ro",
            "-e", "LOGINAPP_SECRET_KEY_FILE=/run/secrets/secret_key",
            "-e", f"LOGINAPP_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:{server.port}/loginapp",
            "-e", "LOGINAPP_DATABASE_PASSWORD_FILE=/run/secrets/db_password",
            "-e", "LOGINAPP_LISTEN_ADDRESS=127.0.0.1", "-e", f"LOGINAPP_PORT={port}",
            "-e", "LOGINAPP_WORKERS=2",
            IMAGE,
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
                pytest.fail(f"container did not become healthy:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.5)
        yield port
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        server.stop()
        shutil.rmtree(secrets_dir, ignore_errors=True)


def test_image_serves_and_logs_in(container: int) -> None:
    browser = Browser(container)
    response, text = browser.request("GET", "/healthz")
    assert response.status == 200
    response, text = browser.request("GET", "/readyz")
    assert response.status == 200, text

    password = "image test passphrase"
    form = {"username": "imgtest", "password": password, "confirm": password}
    response, text = browser.request(
        "POST", "/register", {"csrf_token": browser.csrf("/register"), **form}
    )
    assert response.status == 302, text
    assert browser.cookie is not None
    assert browser.cookie.startswith("__Host-loginapp=")

    form = {"csrf_token": browser.csrf("/login"), "username": "imgtest", "password": password}
    response, _ = browser.request("POST", "/login", form)
    assert response.status == 302
    response, text = browser.request("GET", "/")
    assert response.status == 200
    assert "Hello, imgtest" in text
    assert "198.51.100.23" in text  # client IP through ProxyFix

    response, _ = browser.request("GET", "/static/style.css")
    assert response.status == 200


def test_image_runs_as_unprivileged_user_and_leaves_the_port_to_the_deployment() -> None:
    # No EXPOSE and no HEALTHCHECK: both would repeat a port that LOGINAPP_PORT sets.
    fmt = "{{.Config.User}} {{json .Config.ExposedPorts}} {{json .Config.Healthcheck}}"
    result = subprocess.run(
        ["docker", "image", "inspect", "-f", fmt, IMAGE],
        check=True,
        capture_output=True,
        text=True,
    )
    uid = yaml.safe_load((REPO / "roles/loginapp/defaults/main.yml").read_text())[
        "loginapp_app_uid"
    ]
    assert result.stdout == f"{uid}:{uid} null null\n"
