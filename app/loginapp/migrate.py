"""Schema migrations: ``flask --app loginapp db upgrade|downgrade|current``.

This is the one supported way to migrate. Alembic is configured here, not in an
alembic.ini, and runs on a connection handed to it. On PostgreSQL every schema
change holds a session-level advisory lock, so replicas that start together
take turns; the ones that follow find the schema at head and do nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from .config import PREFIX
from .db import make_engine

# Any constant works as long as every replica uses the same one ("loginapp").
ADVISORY_LOCK_KEY = 0x6C6F67696E617070 & 0x7FFFFFFFFFFFFFFF
# Retry delays while the database starts: 0.5 s, 1 s, 2 s, 4 s, then every 5 s.
FIRST_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 5.0
# What Alembic calls the empty schema, for messages.
BASE = "base"

log = logging.getLogger("loginapp.migrate")


class DatabaseUnavailable(RuntimeError):
    """The database did not accept connections within the configured wait."""


def _reason(error: OperationalError) -> str:
    # Driver messages span lines ("... Is the server running ..."); one log line each.
    return " ".join(str(error.orig or error).split())


def connect(engine: Engine, wait: float) -> Connection:
    """Connect, retrying with a bounded backoff for up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    delay = FIRST_RETRY_DELAY
    while True:
        try:
            return engine.connect()
        except OperationalError as error:
            reason = _reason(error)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseUnavailable(
                    f"The database did not accept connections within {PREFIX}DATABASE_WAIT="
                    f"{wait:g} seconds: {reason}"
                ) from None
            pause = min(delay, remaining)
            log.warning("database not ready (%s); retrying in %.1f s", reason, pause)
            time.sleep(pause)
            delay = min(delay * 2, MAX_RETRY_DELAY)


@contextmanager
def _connection(url: str, password: str | None, wait: float) -> Iterator[Connection]:
    engine = make_engine(url, password)
    try:
        with connect(engine, wait) as connection:
            yield connection
    finally:
        engine.dispose()


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    """Hold the advisory lock on PostgreSQL; SQLite has one writer anyway."""
    if connection.dialect.name != "postgresql":
        yield
        return
    log.info("waiting for the migration lock")
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
        connection.commit()


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "loginapp:migrations")
    # migrations/env.py runs on exactly this connection.
    config.attributes["connection"] = connection
    return config


def _revision(connection: Connection) -> str:
    return MigrationContext.configure(connection).get_current_revision() or BASE


def _migrate(step: Callable[[Config, str], None], url: str, password: str | None, revision: str,
             wait: float) -> tuple[str, str]:  # fmt: skip
    """Run an Alembic step to ``revision`` under the lock; the revisions before and after."""
    with _connection(url, password, wait) as connection, _migration_lock(connection):
        before = _revision(connection)
        step(alembic_config(connection), revision)
        connection.commit()
        return before, _revision(connection)


def upgrade(
    url: str, password: str | None = None, revision: str = "head", wait: float = 0
) -> tuple[str, str]:
    """Upgrade the schema to ``revision``; return the revisions before and after."""
    return _migrate(command.upgrade, url, password, revision, wait)


def downgrade(url: str, password: str | None, revision: str, wait: float = 0) -> tuple[str, str]:
    """Downgrade the schema to ``revision``; return the revisions before and after."""
    return _migrate(command.downgrade, url, password, revision, wait)


def current(url: str, password: str | None = None, wait: float = 0) -> str:
    with _connection(url, password, wait) as connection:
        return _revision(connection)


# --- flask db ----------------------------------------------------------------------

cli = AppGroup("db", help="Migrate the database schema (Alembic).")


def _database(app: Flask | None = None) -> tuple[str, str | None, float]:
    """URL, password and wait of ``app``'s database (default: the current app's)."""
    config = (app or current_app).config
    return config["DATABASE_URL"], config.get("DATABASE_PASSWORD"), config["DATABASE_WAIT"]


def _outcome(verb: str, before: str, after: str) -> str:
    if before == after:
        return f"Database schema is already at {after}."
    return f"Database schema {verb} from {before} to {after}."


def _report(verb: str, before: str, after: str) -> None:
    click.echo(_outcome(verb, before, after))


def upgrade_at_start(app: Flask) -> str:
    """`db upgrade` for a server about to listen (gunicorn.conf.py): the outcome as one line.

    Raises DatabaseUnavailable or alembic's CommandError, like the command."""
    url, password, wait = _database(app)
    return _outcome("upgraded", *upgrade(url, password, "head", wait))


@contextmanager
def _clear_errors() -> Iterator[None]:
    # One line on stderr and exit status 1, not a traceback.
    try:
        yield
    except (DatabaseUnavailable, CommandError) as error:
        raise click.ClickException(str(error)) from None


@cli.command("upgrade")
@click.argument("revision", default="head")
def upgrade_command(revision: str) -> None:
    """Upgrade the schema to REVISION (default: head), waiting for the database."""
    url, password, wait = _database()
    with _clear_errors():
        _report("upgraded", *upgrade(url, password, revision, wait))


@cli.command("downgrade")
@click.argument("revision")
def downgrade_command(revision: str) -> None:
    """Downgrade the schema to REVISION ("base" removes every table)."""
    url, password, wait = _database()
    with _clear_errors():
        _report("downgraded", *downgrade(url, password, revision, wait))


@cli.command("current")
def current_command() -> None:
    """Print the schema's revision ("base" when empty)."""
    url, password, wait = _database()
    with _clear_errors():
        click.echo(current(url, password, wait))


def init_app(app: Flask) -> None:
    app.cli.add_command(cli)
