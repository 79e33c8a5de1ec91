"""SQLAlchemy engine and per-request session handling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

EXTENSION = "loginapp.db"


def database_passwords(text: str | None) -> list[str]:
    """The passwords of LOGINAPP_DATABASE_PASSWORD, one a line, in the order to try them."""
    return [line for line in (text or "").splitlines() if line]


def database_url(url: str, password: str | None) -> URL:
    """Parse the URL and add the (first) password kept out of it (e.g. a Swarm secret)."""
    parsed = make_url(url)
    passwords = database_passwords(password)
    if passwords:
        parsed = parsed.set(password=passwords[0])
    return parsed


def make_engine(url: str, password: str | None = None) -> Engine:
    parsed = database_url(url, password)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql":
        # Fail readiness checks quickly instead of hanging on an unreachable host.
        kwargs["connect_args"] = {"connect_timeout": 5, "application_name": "loginapp"}
        kwargs["pool_size"] = 5
        kwargs["max_overflow"] = 5
    elif parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 15}
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    passwords = database_passwords(password)
    if len(passwords) > 1:
        event.listen(engine, "do_connect", _first_accepted_password(passwords))
    return engine


def _first_accepted_password(passwords: list[str]) -> Callable[..., Any]:
    """Connect with the first password the server accepts.

    A password rotation gives the app the old and the new password, and the
    role's password changes while replicas run: every new connection still
    gets in, whichever of the two the role has at that moment.
    """

    def connect(dialect: Any, _record: Any, cargs: tuple, cparams: dict) -> Any:
        for password in passwords[:-1]:
            try:
                return dialect.connect(*cargs, **{**cparams, "password": password})
            except dialect.loaded_dbapi.OperationalError as error:
                # Anything but a refused password (server down, ...) is not retried.
                if "password authentication failed" not in str(error):
                    raise
        return dialect.connect(*cargs, **{**cparams, "password": passwords[-1]})

    return connect


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # SQLite leaves foreign keys off by default; WAL lets readers run during a write.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"], app.config.get("DATABASE_PASSWORD"))
    app.extensions[EXTENSION] = sessionmaker(bind=engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)


def get_engine() -> Engine:
    return current_app.extensions[EXTENSION].kw["bind"]


def get_session() -> Session:
    if "db_session" not in g:
        g.db_session = current_app.extensions[EXTENSION]()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        # close() rolls back anything a failed request left uncommitted.
        session.close()


def ping() -> None:
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))
