"""`flask --app loginapp db ...` as the image's entrypoint and people run it: a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from loginapp_kit.pgserver import PostgresServer, free_port
from sqlalchemy import create_engine, inspect

from loginapp.migrate import alembic_config

FLASK = Path(sys.executable).with_name("flask")
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
TABLES = {"users", "user_sessions", "login_throttle", "alembic_version"}


def flask_db(url: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """Start `flask --app loginapp db ARGS` against ``url`` with a clean LOGINAPP_* environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOGINAPP_")}
    environ.update(LOGINAPP_DATABASE_URL=url, **env)
    return subprocess.Popen(
        [str(FLASK), "--app", "loginapp", "db", *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_flask_db(url: str, *args: str, **env: str) -> tuple[int, str, str]:
    process = flask_db(url, *args, **env)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_on_an_empty_database(empty_database_url: str) -> None:
    status, stdout, stderr = run_flask_db(empty_database_url, "upgrade")
    assert status == 0, stderr
    assert stdout == f"Database schema upgraded from base to {HEAD}.\n"
    assert tables(empty_database_url) == TABLES
    # Again: nothing to do, which is what every replica but the first sees.
    status, stdout, stderr = run_flask_db(empty_database_url, "upgrade")
    assert status == 0, stderr
    assert stdout == f"Database schema is already at {HEAD}.\n"


def test_downgrade_to_base_and_upgrade_again(empty_database_url: str) -> None:
    assert run_flask_db(empty_database_url, "upgrade")[0] == 0
    status, stdout, stderr = run_flask_db(empty_database_url, "downgrade", "base")
    assert status == 0, stderr
    assert stdout == f"Database schema downgraded from {HEAD} to base.\n"
    assert tables(empty_database_url) == {"alembic_version"}
    status, stdout, stderr = run_flask_db(empty_database_url, "upgrade", "head")
    assert status == 0, stderr
    assert stdout == f"Database schema upgraded from base to {HEAD}.\n"
    assert tables(empty_database_url) == TABLES


def test_current_prints_the_revision(empty_database_url: str) -> None:
    status, stdout, stderr = run_flask_db(empty_database_url, "current")
    assert (status, stdout) == (0, "base\n"), stderr
    assert run_flask_db(empty_database_url, "upgrade")[0] == 0
    status, stdout, stderr = run_flask_db(empty_database_url, "current")
    assert (status, stdout) == (0, f"{HEAD}\n"), stderr


def test_unknown_revision_is_a_clear_error(empty_database_url: str) -> None:
    status, stdout, stderr = run_flask_db(empty_database_url, "upgrade", "nonexistent")
    assert status == 1
    assert stdout == ""
    assert stderr.splitlines()[-1] == ("Error: Can't locate revision identified by 'nonexistent'")


@pytest.mark.postgresql
def test_concurrent_upgrades_take_turns(pg_server: PostgresServer) -> None:
    url = pg_server.create_database("mig_race")
    processes = [flask_db(url, "upgrade") for _ in range(3)]
    results = [(p.communicate(timeout=120), p.returncode) for p in processes]
    assert [status for _, status in results] == [0, 0, 0], results
    assert all("waiting for the migration lock" in stderr for (_, stderr), _ in results)
    # The advisory lock serialises them: one migrates, the others find it done.
    assert sorted(stdout for (stdout, _), _ in results) == [
        f"Database schema is already at {HEAD}.\n",
        f"Database schema is already at {HEAD}.\n",
        f"Database schema upgraded from base to {HEAD}.\n",
    ]


def test_upgrade_gives_up_after_the_database_wait() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/loginapp"
    started = time.monotonic()
    status, stdout, stderr = run_flask_db(url, "upgrade", LOGINAPP_DATABASE_WAIT="2")
    elapsed = time.monotonic() - started
    assert status == 1
    assert stdout == ""
    last = stderr.splitlines()[-1]
    assert last.startswith(
        "Error: The database did not accept connections within LOGINAPP_DATABASE_WAIT=2 seconds: "
    )
    assert "Connection refused" in last
    retries = [line for line in stderr.splitlines() if "database not ready" in line]
    assert len(retries) >= 2, stderr  # one line per failed attempt, with the reason
    assert all("Connection refused" in line for line in retries)
    assert 2 <= elapsed < 20


@pytest.mark.postgresql
def test_upgrade_waits_for_a_database_that_is_starting() -> None:
    # The first deploy: app replicas start while PostgreSQL is still initialising.
    server = PostgresServer()
    try:
        url = server.url("postgres")
        process = flask_db(url, "upgrade", LOGINAPP_DATABASE_WAIT="60")
        assert process.stderr is not None
        before_start = ""
        for line in process.stderr:  # until the first failed attempt is logged
            before_start += line
            if "database not ready" in line:
                break
        assert "database not ready" in before_start
        server.start()
        stdout, stderr = process.communicate(timeout=90)
        assert process.returncode == 0, before_start + stderr
        assert stdout == f"Database schema upgraded from base to {HEAD}.\n"
    finally:
        server.stop()
