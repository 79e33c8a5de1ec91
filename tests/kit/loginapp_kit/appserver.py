"""The app served on this machine for measurements: a migrated database and plain-HTTP servers on loopback.

* ``database(workdir)``: a throwaway PostgreSQL (``pgserver``) when its
  binaries exist, as in production, else SQLite; migrated with
  ``flask --app loginapp db upgrade``, the one way the app migrates;
* ``serve(kind, database_url, workdir)``: ``dev`` (Flask's development server,
  ``flask run``) or ``gunicorn`` (app/gunicorn.conf.py, production
  environment) on a free loopback port, up once /healthz answers, stopped on
  exit;
* ``ensure_user(new_client, username, password)``: the bench user, registered
  and logged in through ``client.Client`` like a browser.

The servers speak plain HTTP to clients that connect directly, so they run
with ``LOGINAPP_SECURE_COOKIES=false`` (a cookie sent over http) and
``LOGINAPP_PROXY_HOPS=0`` (no proxy's X-Forwarded-* to trust).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import REPO
from .client import Client
from .pgserver import PostgresServer, find_bin, free_port
from .wait import wait_for

KINDS = ("dev", "gunicorn")
GUNICORN_CONF = REPO / "app" / "gunicorn.conf.py"
LOOPBACK = "127.0.0.1"


@dataclass
class Database:
    url: str
    backend: str  # for reports: "PostgreSQL (self-started)" or "SQLite"


@dataclass
class AppServer:
    kind: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def client(self, timeout: float = 30) -> Client:
        """A new browser for this server."""
        return Client(self.base_url, timeout=timeout)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (Gunicorn finishes its requests), SIGKILL to the server's process group after ``timeout``."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def app_env(database_url: str, **extra: str) -> dict[str, str]:
    """The servers' environment: this database, a throwaway key, HTTP settings, no inherited LOGINAPP_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGINAPP_")}
    env.update(
        LOGINAPP_DATABASE_URL=database_url,
        LOGINAPP_SECRET_KEY=secrets.token_urlsafe(48),
        LOGINAPP_SECURE_COOKIES="false",
        LOGINAPP_PROXY_HOPS="0",
        LOGINAPP_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def flask(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120) -> str:
    """``flask --app loginapp ARGS`` with this interpreter; its output, RuntimeError when it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "loginapp", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


@contextmanager
def _workdir(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="loginapp-appserver-") as tmp:
        yield Path(tmp)


@contextmanager
def database(workdir: Path | None = None, name: str = "loginapp") -> Iterator[Database]:
    """A migrated database for the app; the PostgreSQL server is stopped and removed on exit.

    SQLite (a file in ``workdir``) only when PostgreSQL's ``initdb`` is missing.
    """
    with ExitStack() as stack:
        if find_bin("initdb"):
            server = PostgresServer().start()
            stack.callback(server.stop)
            db = Database(server.create_database(name), "PostgreSQL (self-started)")
        else:
            directory = stack.enter_context(_workdir(workdir))
            db = Database(f"sqlite:///{directory / name}.sqlite3", "SQLite")
        flask("db", "upgrade", env=app_env(db.url))
        yield db


def _command(kind: str, port: int) -> tuple[list[str], dict[str, str]]:
    if kind == "dev":
        command = [sys.executable, "-m", "flask", "--app", "loginapp", "run", "--host", LOOPBACK, "--port", str(port)]
        return command, {"LOGINAPP_ENV": "development"}
    if kind == "gunicorn":
        command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "loginapp:create_app()"]
        env = {
            "LOGINAPP_ENV": "production",
            "LOGINAPP_LISTEN_ADDRESS": LOOPBACK,
            "LOGINAPP_PORT": str(port),
            "LOGINAPP_ACCESS_LOG": "/dev/null",
        }
        return command, env
    raise ValueError(f"unknown server kind {kind!r}: one of {', '.join(KINDS)}")


def _healthy(server: AppServer) -> bool:
    if server.process.poll() is not None:
        raise RuntimeError(f"{server.kind} server exited ({server.process.returncode}):\n{server.log_tail()}")
    try:
        return server.client(timeout=5).get("/healthz").status == 200
    except OSError:
        return False


@contextmanager
def serve(kind: str, database_url: str, workdir: Path | None = None, timeout: float = 60,
          **env: str) -> Iterator[AppServer]:  # fmt: skip
    """Run the ``kind`` server (``dev`` or ``gunicorn``) on a free loopback port until the block ends.

    ``env`` adds or overrides LOGINAPP_* variables; the server's output goes to
    ``workdir``/KIND-PORT.log (in a temporary directory without ``workdir``).
    """
    with _workdir(workdir) as directory:
        port = free_port()
        command, mode = _command(kind, port)
        log = directory / f"{kind}-{port}.log"
        with log.open("w") as out:
            # Its own process group, so a server that ignores SIGTERM goes with all its children.
            process = subprocess.Popen(
                command, env=app_env(database_url, **{**mode, **env}), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=directory, start_new_session=True,
            )  # fmt: skip
        server = AppServer(kind, port, process, log)
        try:
            if not wait_for(lambda: _healthy(server), timeout, interval=0.2):
                raise RuntimeError(f"{kind} server on port {port} not healthy in {timeout:g} s:\n{server.log_tail()}")
            yield server
        finally:
            server.stop()


def ensure_user(new_client: Callable[[], Client], username: str, password: str) -> Client:
    """Register ``username`` (already taken is fine) and log in with a fresh browser; return that logged-in client.

    ``new_client`` makes independent browsers: ``AppServer.client``, ``Target.client``.
    """
    new_client().register(username, password)
    client = new_client()
    client.login(username, password)
    if not client.logged_in_as(username):
        raise RuntimeError(f"cannot log in as {username} on {client.base_url}")
    return client
