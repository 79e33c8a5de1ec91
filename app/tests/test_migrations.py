"""Alembic migrations on an empty PostgreSQL, and replicas migrating at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, inspect

from .pgserver import PostgresServer

APP_DIR = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.postgresql


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGINAPP_")}
    env["LOGINAPP_DATABASE_URL"] = url
    return env


def _head(server: PostgresServer, db: str) -> str:
    with psycopg.connect(server.dsn(db)) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_alembic_upgrade_head_on_empty_postgresql(pg_server: PostgresServer) -> None:
    url = pg_server.create_database("mig_cli")
    alembic = Path(sys.executable).with_name("alembic")
    subprocess.run(
        [str(alembic), "-c", str(APP_DIR / "alembic.ini"), "upgrade", "head"],
        check=True,
        cwd=APP_DIR,
        env=_env(url),
        capture_output=True,
    )
    assert _head(pg_server, "mig_cli") == "0001"
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"users", "user_sessions", "login_throttle", "alembic_version"} <= tables
    # Downgrade and upgrade again: the migration is reversible.
    for target in ("base", "head"):
        subprocess.run(
            [str(alembic), "-c", str(APP_DIR / "alembic.ini"), "downgrade" if target == "base"
             else "upgrade", target],
            check=True, cwd=APP_DIR, env=_env(url), capture_output=True,
        )  # fmt: skip
    assert _head(pg_server, "mig_cli") == "0001"


def test_concurrent_migrations_both_succeed(pg_server: PostgresServer) -> None:
    url = pg_server.create_database("mig_race")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "loginapp.migrate"],
            env=_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert all("waiting for the migration lock" in out for out in outputs)
    assert _head(pg_server, "mig_race") == "0001"


def test_migrate_without_url_fails_clearly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loginapp.migrate"],
        env=_env(""),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "LOGINAPP_DATABASE_URL is not set" in result.stderr
