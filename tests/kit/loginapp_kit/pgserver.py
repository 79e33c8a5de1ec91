"""A throwaway PostgreSQL server for tests and the benchmark (initdb + pg_ctl)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

SUPERUSER = "postgres"


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """initdb into a temp dir and start postgres on a free loopback port.

    PostgreSQL refuses to run as root, so as root the server runs as `nobody`
    through setpriv, in a directory that user owns. With ``host_auth`` (e.g.
    ``scram-sha-256``) TCP logins need a password, as in the stack; the
    superuser then connects through the socket in ``dir``, which trusts it.
    """

    def __init__(self, host_auth: str = "trust") -> None:
        initdb = find_bin("initdb")
        pg_ctl = find_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise FileNotFoundError("initdb/pg_ctl not found (install PostgreSQL server binaries)")
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.dir = Path(tempfile.mkdtemp(prefix="loginapp-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.host_auth = host_auth
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "nobody", "nogroup")
            self._prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._prefix, *args], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> PostgresServer:
        auth = ["--auth-local=trust", f"--auth-host={self.host_auth}"]
        if self.host_auth != "trust":
            # initdb wants a superuser password for any password method; nobody uses it.
            (self.dir / "pwfile").write_text(os.urandom(16).hex())
            if self._prefix:
                shutil.chown(self.dir / "pwfile", "nobody", "nogroup")
            auth.append(f"--pwfile={self.dir / 'pwfile'}")
        self._run(self.initdb, "-D", str(self.data), *auth, "-U", SUPERUSER, "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        self._run(
            self.pg_ctl, "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, dbname: str) -> str:
        """The superuser's connection string (through the socket, which trusts it)."""
        return f"host={self.dir} port={self.port} user={SUPERUSER} dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            suffix = f" TEMPLATE {template}" if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        return self.url(name)

    def create_role_with_database(self, name: str, password: str | None = None) -> None:
        """A login role (without a password unless given) that owns a database of the same name, as the stack's."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), password))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name)))

    def set_password(self, role: str, password: str) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), password))
