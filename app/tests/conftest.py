"""Fixtures: every app test runs on SQLite and on a real, throwaway PostgreSQL.

Test modules get their helpers as fixtures from here (``forms``, ``clock``,
``user``...), never by importing this module or each other.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from loginapp_kit.html import csrf_token
from loginapp_kit.pgserver import PostgresServer, find_bin
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from loginapp import create_app
from loginapp.migrate import upgrade

# Cheap argon2 parameters keep the suite fast; the production defaults are
# exercised in test_passwords.py.
FAST_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024, "ARGON2_PARALLELISM": 1}
SECRET = "test-secret-key-that-is-long-enough-0123456789"
# A password every policy accepts.
PASSWORD = "purple elephants dance quietly"
_db_counter = itertools.count()


class Clock:
    """Injected time source, so timeouts and throttling are tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


class Forms:
    """Fills in the app's forms as a browser would: load the page, post with its CSRF token."""

    def csrf_token(self, client: FlaskClient, path: str = "/login") -> str:
        return csrf_token(client.get(path).get_data(as_text=True))

    def register(
        self, client: FlaskClient, username: str, password: str, confirm: str | None = None
    ) -> TestResponse:
        return client.post(
            "/register",
            data={
                "csrf_token": self.csrf_token(client, "/register"),
                "username": username,
                "password": password,
                "confirm": password if confirm is None else confirm,
            },
        )

    def login(
        self, client: FlaskClient, username: str, password: str, **kwargs: Any
    ) -> TestResponse:
        data = {"csrf_token": self.csrf_token(client), "username": username, "password": password}
        return client.post("/login", data=data, **kwargs)

    def logout(self, client: FlaskClient) -> TestResponse:
        return client.post("/logout", data={"csrf_token": self.csrf_token(client, "/")})

    def change_password(
        self, client: FlaskClient, current: str, new: str, confirm: str | None = None
    ) -> TestResponse:
        return client.post(
            "/password",
            data={
                "csrf_token": self.csrf_token(client, "/password"),
                "current_password": current,
                "new_password": new,
                "confirm": new if confirm is None else confirm,
            },
        )


@dataclass(frozen=True)
class Account:
    username: str
    password: str


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own LOGINAPP_* settings must not leak into tests.
    for name in list(os.environ):
        if name.startswith("LOGINAPP_") and name != "LOGINAPP_IMAGE":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    if not find_bin("initdb"):
        pytest.skip("PostgreSQL tests need initdb/pg_ctl on PATH (PostgreSQL server binaries)")
    server = PostgresServer().start()
    try:
        server.create_database("loginapp_template")
        upgrade(server.url("loginapp_template"))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_password_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server whose TCP logins need a password (scram-sha-256), as in the stack."""
    if not find_bin("initdb"):
        pytest.skip("PostgreSQL tests need initdb/pg_ctl on PATH (PostgreSQL server binaries)")
    server = PostgresServer(host_auth="scram-sha-256").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def empty_database_url(database_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each kind without any tables, fresh for every test."""
    if database_kind == "sqlite":
        return f"sqlite:///{tmp_path}/empty.sqlite3"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"e{next(_db_counter)}")


@pytest.fixture
def database_url(database_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind, fresh for every test."""
    if database_kind == "sqlite":
        path = tmp_path / "loginapp.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"t{next(_db_counter)}", template="loginapp_template")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_app(database_url: str, clock: Clock) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        config = {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "DATABASE_URL": database_url,
            "NOW": clock,
            # No background pruning unless a test asks for it.
            "PRUNE_INTERVAL": 0,
            **FAST_ARGON2,
            **overrides,
        }
        app = create_app(config)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["loginapp.db"].kw["bind"].dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """Serve apps on real threaded HTTP servers on loopback; each call returns a base URL.

    For what the test client cannot show: requests that truly run at the same
    time, in threads of one process and across two apps (replicas).
    """
    servers = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def forms() -> Forms:
    return Forms()


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def user(client: FlaskClient, forms: Forms) -> Account:
    """A registered account (not logged in)."""
    response = forms.register(client, "alice", PASSWORD)
    assert response.status_code == 302, response.get_data(as_text=True)
    return Account("alice", PASSWORD)
