"""Alembic environment: runs on a connection handed in by loginapp.migrate, or
on LOGINAPP_DATABASE_URL when called as `alembic -c app/alembic.ini ...`."""

from alembic import context

from loginapp.config import env_value
from loginapp.db import make_engine
from loginapp.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url") or env_value("DATABASE_URL")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or env_value("DATABASE_URL")
    if not url:
        raise SystemExit("Set LOGINAPP_DATABASE_URL (or sqlalchemy.url) to migrate.")
    engine = make_engine(url, env_value("DATABASE_PASSWORD"))
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
