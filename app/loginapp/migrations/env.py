"""Alembic environment: runs only on the connection loginapp.migrate hands in.

Migrate with `flask --app loginapp db upgrade`; there is no alembic.ini, no URL
of its own here and no offline (--sql) mode.
"""

from alembic import context

from loginapp.models import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("Migrate with `flask --app loginapp db`, not with alembic directly.")

context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
