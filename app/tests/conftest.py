"""Fixtures: every app test runs on SQLite and on a real, throwaway PostgreSQL."""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from loginapp import create_app
from loginapp.migrate import upgrade

from .pgserver import PostgresServer, find_bin

# Cheap argon2 parameters keep the suite fast; the production defaults are
# exercised in test_passwords.py.
FAST_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024, "ARGON2_PARALLELISM": 1}
SECRET = "test-secret-key-that-is-long-enough-0123456789"
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                     r'type="hidden" name="csrf_token" value="([^"]+)"')  # fmt: skip
_db_counter = itertools.count()


class Clock:
    """Injected time source, so timeouts and throttling are tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


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
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind, fresh for every test."""
    if request.param == "sqlite":
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
            "AUTO_MIGRATE": False,
            "NOW": clock,
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


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    response = client.get(path)
    match = CSRF_RE.search(response.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1) or match.group(2)


def register(client: FlaskClient, username: str, password: str, confirm: str | None = None):
    token = csrf_token(client, "/register")
    return client.post(
        "/register",
        data={
            "csrf_token": token,
            "username": username,
            "password": password,
            "confirm": password if confirm is None else confirm,
        },
    )


def login(client: FlaskClient, username: str, password: str, **kwargs: Any):
    token = csrf_token(client, "/login")
    return client.post(
        "/login",
        data={"csrf_token": token, "username": username, "password": password},
        **kwargs,
    )


def logout(client: FlaskClient):
    return client.post("/logout", data={"csrf_token": csrf_token(client, "/")})


PASSWORD = "purple elephants dance quietly"


@pytest.fixture
def user(client: FlaskClient) -> tuple[str, str]:
    response = register(client, "alice", PASSWORD)
    assert response.status_code == 302, response.get_data(as_text=True)
    return "alice", PASSWORD
