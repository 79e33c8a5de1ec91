"""Deleting what has expired: ``flask --app loginapp prune``, and the same in the background.

Expired sessions and spent throttle rows are dead weight: every replica
already treats them as absent. Each worker process prunes every
``PRUNE_INTERVAL`` seconds (jittered) from a daemon thread started by its first
request, so the tables stay bounded without a scheduler service, cron or a
human. Several workers pruning is harmless: the deletes are idempotent, and
cheap on tables that pruning keeps small.
"""

from __future__ import annotations

import logging
import os
import random
import threading

import click
from flask import Flask
from flask.cli import with_appcontext

from . import security
from .db import get_session

EXTENSION = "loginapp.prune"
log = logging.getLogger("loginapp.prune")


def prune_expired() -> tuple[int, int]:
    """Delete expired sessions and spent throttle rows; how many of each (app context)."""
    db = get_session()
    moment = security.now()
    sessions = security.prune_sessions(db, moment)
    throttle = security.prune_throttle(db, moment)
    db.commit()
    return sessions, throttle


class Pruner:
    """One daemon thread per process (after a fork too), pruning every interval."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.interval = app.config["PRUNE_INTERVAL"]
        self.runs = 0
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def ensure_running(self) -> None:
        if self.interval <= 0 or self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="loginapp-prune", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        # A random first delay spreads the workers of all replicas over the interval.
        delay = random.uniform(0.1, 1.0) * self.interval  # noqa: S311 - not for security
        while not self._stop.wait(delay):
            try:
                with self.app.app_context():
                    sessions, throttle = prune_expired()
                if sessions or throttle:
                    log.info("pruned %d sessions and %d throttle rows", sessions, throttle)
            except Exception:  # the next run retries; a pruner must never end the worker
                log.exception("pruning failed")
            self.runs += 1
            delay = self.interval * random.uniform(0.9, 1.1)  # noqa: S311


@click.command("prune")
@with_appcontext
def prune_command() -> None:
    """Delete expired sessions and spent login-throttle rows now."""
    sessions, throttle = prune_expired()
    click.echo(f"Deleted {sessions} expired sessions and {throttle} spent throttle rows.")


def init_app(app: Flask) -> None:
    pruner = app.extensions[EXTENSION] = Pruner(app)
    app.before_request(pruner.ensure_running)
    app.cli.add_command(prune_command)
