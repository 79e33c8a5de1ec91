"""The db image's db-set-password.sh against a real PostgreSQL: it gives the app's role the password on
stdin through the superuser's socket, only when the role does not have it yet, and fails clearly when
the server never comes up."""

import os
import subprocess

import psycopg
import pytest
from loginapp_kit import REPO
from loginapp_kit.pgserver import PostgresServer, find_bin

SCRIPT = REPO / "roles" / "images" / "files" / "db" / "set-password.sh"


@pytest.fixture
def server():
    if not (find_bin("initdb") and find_bin("psql")):
        pytest.skip("needs PostgreSQL's server and client binaries")
    server = PostgresServer(host_auth="scram-sha-256").start()
    try:
        server.create_role_with_database("app")  # as the image's entrypoint makes it: no password yet
        yield server
    finally:
        server.stop()


def set_password(server, password, **env):
    environ = {
        "PATH": os.environ["PATH"], "POSTGRES_USER": "app", "POSTGRES_DB": "app",
        "DB_SOCKET_DIR": str(server.dir), "PGPORT": str(server.port), **env,
    }  # fmt: skip
    return subprocess.run([str(SCRIPT)], input=password, env=environ, capture_output=True, text=True, timeout=60)


def logs_in(server, password):
    try:
        psycopg.connect(host="127.0.0.1", port=server.port, user="app", dbname="app", password=password).close()
    except psycopg.OperationalError:
        return False
    return True


def test_sets_the_password_once_and_changes_it_on_request(server):
    assert not logs_in(server, "first'pass")
    first = set_password(server, "first'pass")
    assert (first.returncode, first.stdout) == (0, "changed\n"), first.stderr
    assert logs_in(server, "first'pass")

    again = set_password(server, "first'pass")
    assert (again.returncode, again.stdout) == (0, "unchanged\n"), again.stderr

    rotated = set_password(server, "second")
    assert (rotated.returncode, rotated.stdout) == (0, "changed\n"), rotated.stderr
    assert logs_in(server, "second") and not logs_in(server, "first'pass")
    assert "second" not in rotated.stdout + rotated.stderr


def test_refuses_an_empty_password(server):
    result = set_password(server, "")
    assert result.returncode == 2 and "no password on stdin" in result.stderr


def test_gives_up_when_the_server_never_answers(server, tmp_path):
    result = set_password(server, "pw", DB_SOCKET_DIR=str(tmp_path), DB_WAIT="2")
    assert result.returncode == 1
    assert "did not accept connections within 2 s" in result.stderr
