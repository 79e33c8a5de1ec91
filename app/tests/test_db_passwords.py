"""Several database passwords, one a line: each new connection uses the first the server accepts,
so the role's password can change under running replicas (a rotation)."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from loginapp.db import make_engine

pytestmark = pytest.mark.postgresql
_roles = itertools.count()


@pytest.fixture
def role(pg_password_server):
    """A role with its own database; ``role.set_password(p)`` changes its password."""
    name = f"rotating{next(_roles)}"
    pg_password_server.create_role_with_database(name)

    class Role:
        url = f"postgresql+psycopg://{name}@127.0.0.1:{pg_password_server.port}/{name}"

        @staticmethod
        def set_password(password: str) -> None:
            pg_password_server.set_password(name, password)

    return Role


def whoami(engine) -> str:
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT current_user")).scalar_one()
    finally:
        engine.dispose()


def test_a_refused_password_fails(role):
    role.set_password("new")
    with pytest.raises(OperationalError, match="password authentication failed"):
        whoami(make_engine(role.url, "old"))


@pytest.mark.parametrize("passwords", ["old\nnew", "new\nold", "new", "\nold\n\nnew\n"])
def test_the_first_accepted_password_is_used(role, passwords):
    role.set_password("new")
    assert whoami(make_engine(role.url, passwords)).startswith("rotating")


def test_new_connections_follow_a_password_change(role):
    """The middle of a rotation: replicas know both passwords while the role's changes."""
    role.set_password("old")
    engine = make_engine(role.url, "old\nnew")
    assert whoami(engine).startswith("rotating")
    role.set_password("new")
    assert whoami(engine).startswith("rotating")
    with pytest.raises(OperationalError, match="password authentication failed"):
        whoami(make_engine(role.url, "old"))


def test_other_errors_are_not_retried_with_the_next_password(role):
    """A missing database is the server's answer, whatever the password: raised as it is."""
    role.set_password("new")
    missing = role.url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(OperationalError, match="does not exist"):
        whoami(make_engine(missing, "new\nold"))
