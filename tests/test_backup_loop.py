"""The backup service's loop (the db image's db-backup-loop.sh) against a real PostgreSQL: dumps on schedule,
reads each back, keeps the newest BACKUP_KEEP with checksums, and stops at once when Swarm stops it."""

import os
import signal
import subprocess
import time

import psycopg
import pytest
from loginapp_kit import REPO
from loginapp_kit.pgserver import PostgresServer, find_bin
from loginapp_kit.wait import wait_for

LOOP = REPO / "roles" / "images" / "files" / "db" / "backup-loop.sh"


def loop_environment(tmp_path, port: int, user: str, backups, **settings) -> dict:
    """The loop's environment as the stack gives it, against a local server; ``settings``: BACKUP_* values."""
    return {
        "PATH": os.environ["PATH"], "TMPDIR": str(tmp_path), "DB_PASSWORD_FILE": str(tmp_path / "db_password"),
        "PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": user, "PGDATABASE": "app", "BACKUP_DIR": str(backups),
        **{f"BACKUP_{name.upper()}": str(value) for name, value in settings.items()},
    }  # fmt: skip


@pytest.fixture
def database():
    if not (find_bin("initdb") and find_bin("pg_dump")):
        pytest.skip("needs PostgreSQL's server and client binaries")
    server = PostgresServer().start()
    try:
        server.create_database("app")
        with psycopg.connect(server.dsn("app"), autocommit=True) as conn:
            conn.execute("CREATE TABLE users (name text)")
            conn.execute("INSERT INTO users VALUES ('alice')")
        yield server
    finally:
        server.stop()


def test_dumps_are_read_back_checksummed_and_pruned(database, tmp_path):
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / ".partial-loginapp-20260101T000000Z.dump").write_text("cut short by a stop")
    (tmp_path / "db_password").write_text("not:used\\by trust\n")
    env = loop_environment(tmp_path, database.port, "postgres", backups, interval=1, keep=2)
    loop = subprocess.Popen([str(LOOP)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: len(list(backups.glob("*.dump"))) == 2, 30)
        time.sleep(2.5)  # two more rounds: the oldest are removed
    finally:
        loop.send_signal(signal.SIGINT)  # the image's STOPSIGNAL
        started = time.monotonic()
        output = loop.communicate(timeout=10)[0]
    assert loop.returncode == 0, output
    assert time.monotonic() - started < 3, "the loop should stop at once, not after its sleep"

    assert output.count(", read back") >= 3, output
    assert "removed loginapp-" in output, output
    kept = sorted(path.name for path in backups.iterdir())
    dumps = [name for name in kept if name.endswith(".dump")]
    assert len(dumps) == 2 and kept == sorted(dumps + [f"{dump}.sha256" for dump in dumps]), kept
    assert subprocess.run(["sha256sum", "-c", *[f"{d}.sha256" for d in dumps]], cwd=backups).returncode == 0
    listing = subprocess.run([find_bin("pg_restore"), "--list", backups / dumps[-1]], capture_output=True, text=True)
    assert "TABLE public users" in listing.stdout, listing.stderr
    # The password file libpq read is private to the service's user.
    assert (tmp_path / "pgpass").stat().st_mode & 0o077 == 0


def test_a_dump_uses_the_password_the_server_accepts(tmp_path):
    """During a password rotation the service's file lists the old and the new password."""
    if not (find_bin("initdb") and find_bin("pg_dump")):
        pytest.skip("needs PostgreSQL's server and client binaries")
    server = PostgresServer(host_auth="scram-sha-256").start()
    try:
        server.create_role_with_database("app", password="new:pass")
        backups = tmp_path / "backups"
        backups.mkdir()
        (tmp_path / "db_password").write_text("old\nnew:pass\n")
        env = loop_environment(tmp_path, server.port, "app", backups, interval=1)
        loop = subprocess.Popen([str(LOOP)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            dumped = wait_for(lambda: list(backups.glob("*.dump")), 30)
        finally:
            loop.send_signal(signal.SIGINT)
            output = loop.communicate(timeout=10)[0]
        assert dumped, output
        assert 'password authentication failed for user "app"' in output, "the first line should have been tried"
        assert ", read back" in output, output
    finally:
        server.stop()


def test_a_stop_at_any_step_leaves_whole_dumps_only(database, tmp_path):
    """Back to back dumps (BACKUP_INTERVAL 0), stopped at varied moments: mid-dump, mid-prune or asleep."""
    (tmp_path / "db_password").write_text("unused by trust\n")
    for attempt, delay in enumerate((0.4, 0.7, 1.0, 1.3, 1.6)):
        backups = tmp_path / f"backups-{attempt}"
        backups.mkdir()
        env = loop_environment(tmp_path, database.port, "postgres", backups, interval=0, keep=2)
        loop = subprocess.Popen([str(LOOP)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        loop.send_signal(signal.SIGINT)
        assert loop.wait(timeout=10) == 0
        kept = sorted(path.name for path in backups.iterdir())
        dumps = [name for name in kept if name.endswith(".dump")]
        assert len(dumps) <= 2 and kept == sorted(dumps + [f"{dump}.sha256" for dump in dumps]), (delay, kept)
