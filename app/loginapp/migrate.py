"""Apply the Alembic migrations, safely when several replicas start at once.

On PostgreSQL the upgrade runs while holding a session-level advisory lock, so
concurrent starters queue up; the ones that follow find the schema at head and
do nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from .config import ConfigError, env_value
from .db import make_engine

# Any constant works as long as every replica uses the same one ("loginapp").
ADVISORY_LOCK_KEY = 0x6C6F67696E617070 & 0x7FFFFFFFFFFFFFFF

log = logging.getLogger("loginapp.migrate")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "loginapp:migrations")
    return cfg


def upgrade(url: str, password: str | None = None, revision: str = "head") -> None:
    engine = make_engine(url, password)
    try:
        with engine.connect() as connection:
            locked = connection.dialect.name == "postgresql"
            if locked:
                log.info("waiting for the migration lock")
                connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
                connection.commit()
            try:
                cfg = alembic_config()
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
                connection.commit()
            finally:
                if locked:
                    connection.rollback()
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY}
                    )
                    connection.commit()
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s [%(name)s] %(message)s")
    try:
        url = env_value("DATABASE_URL")
        password = env_value("DATABASE_PASSWORD")
    except ConfigError as exc:
        print(f"loginapp-migrate: {exc}", file=sys.stderr)
        return 2
    if not url:
        print("loginapp-migrate: LOGINAPP_DATABASE_URL is not set.", file=sys.stderr)
        return 2
    upgrade(url, password, args.revision)
    log.info("database schema is at %s", args.revision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
