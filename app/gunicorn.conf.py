"""Gunicorn settings for loginapp.

What a deployment may change (port, workers, timeouts, logs) comes from the
LOGINAPP_* variables, or their *_FILE twins, through loginapp.config's table;
the rest are fixed choices for a read-only container.
"""

from __future__ import annotations

import os
import sys

from loginapp.config import ConfigError, load_gunicorn_options

try:
    # Gunicorn reads this module's names: bind, workers, threads, timeout, ...
    globals().update(load_gunicorn_options(os.environ))
except ConfigError as error:
    # One clear line instead of Gunicorn's "Failed to read config file" traceback.
    sys.exit(f"loginapp: {error}")

worker_class = "gthread"
backlog = 2048

# Import the app once, in the master, and fork the workers from it: a new
# replica (an update, a restart) is ready after one import instead of one per
# worker, and the workers share its memory. Safe because create_app() opens no
# database connection: none is shared across the fork (tests/test_gunicorn_conf.py).
preload_app = True


def on_starting(server) -> None:
    """Bring the schema to head before listening, with the app the master
    already imported: no second interpreter imports it for `flask db upgrade`.
    Waits up to LOGINAPP_DATABASE_WAIT for the database; replicas that start
    together take turns (a PostgreSQL advisory lock)."""
    from alembic.util import CommandError

    from loginapp.migrate import DatabaseUnavailable, upgrade_at_start

    try:
        server.log.info(upgrade_at_start(server.app.wsgi()))
    except (DatabaseUnavailable, CommandError) as error:
        sys.exit(f"loginapp: {error}")


# The heartbeat file must live on a tmpfs so a read-only root fs works.
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp"  # noqa: S108

# Gunicorn 24+ opens a control socket in the working directory, which a
# read-only root fs refuses; containers are managed by signals, not by it.
control_socket_disable = True

# %(h)s is REMOTE_ADDR after the app's ProxyFix has applied the proxy's
# X-Forwarded-For, i.e. the real client rather than nginx.
errorlog = "-"
access_log_format = '%(h)s - %(u)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'

# Limits against oversized requests before they reach the app.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
proc_name = "loginapp"
