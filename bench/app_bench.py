"""Benchmark loginapp: Flask's development server against Gunicorn (production config).

Run from the repository root:  python bench/app_bench.py [--duration 6]

Both servers share one self-started PostgreSQL (SQLite when initdb is missing)
and listen on free loopback ports. wrk loads GET /login and a full login POST
(CSRF token fetched first, argon2id verification with the OWASP parameters) at
10 and 200 connections, then a table with requests/s, p50/p99 latency, errors
and the Gunicorn/dev ratio is printed. Needs `wrk` (apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP_DIR = REPO / "app"
sys.path.insert(0, str(APP_DIR))

USERNAME = "benchuser"
PASSWORD = "benchmark passphrase 42"
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@dataclass
class Result:
    server: str
    scenario: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(
    port: int,
    method: str,
    path: str,
    body: str | None = None,
    cookie: str | None = None,
):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    if cookie:
        headers["Cookie"] = cookie
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    text = response.read().decode()
    set_cookie = response.getheader("Set-Cookie")
    conn.close()
    return (
        response.status,
        text,
        (set_cookie.split(";", 1)[0] if set_cookie else cookie),
    )


def csrf_and_cookie(port: int, path: str) -> tuple[str, str]:
    _, text, cookie = request(port, "GET", path)
    match = CSRF_RE.search(text)
    if not match or not cookie:
        raise RuntimeError(f"no CSRF token/cookie from {path}")
    return match.group(1), cookie


def wait_healthy(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not become healthy")


def start_server(kind: str, env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = workdir / f"{kind}.log"
    env = dict(env)
    if kind == "dev":
        env["LOGINAPP_ENV"] = "development"
        cmd = [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "loginapp",
            "run",
            "--port",
            str(port),
        ]
    else:
        env.update(
            LOGINAPP_ENV="production",
            LOGINAPP_BIND=f"127.0.0.1:{port}",
            LOGINAPP_ACCESS_LOG="/dev/null",
        )
        cmd = [
            sys.executable, "-m", "gunicorn", "-c", str(APP_DIR / "gunicorn.conf.py"),
            "loginapp:create_app()",
        ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    wait_healthy(port, proc, log)
    return proc, port


def parse_wrk(output: str) -> tuple[float, float, float, int]:
    def ms(value: str) -> float:
        match = re.match(r"([\d.]+)(us|ms|s|m)", value)
        if not match:
            return float("nan")
        number, unit = match.groups()
        return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = ms(re.search(r"^\s*50%\s+(\S+)", output, re.MULTILINE).group(1))
    p99 = ms(re.search(r"^\s*99%\s+(\S+)", output, re.MULTILINE).group(1))
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(n) for n in match.groups())
    return rps, p50, p99, errors


def run_wrk(port: int, path: str, connections: int, duration: int, script: Path | None) -> str:
    cmd = [
        "wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s",
        "--timeout", "10s", "--latency",
    ]  # fmt: skip
    if script:
        cmd += ["-s", str(script)]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def login_script(port: int, workdir: Path, name: str) -> Path:
    """Lua script that POSTs a full login with a CSRF token and its session cookie."""
    token, cookie = csrf_and_cookie(port, "/login")
    body = urllib.parse.urlencode({"csrf_token": token, "username": USERNAME, "password": PASSWORD})
    # A login succeeds with 302; a CSRF or password problem would show as a 400/200.
    check_status, _, _ = request(port, "POST", "/login", body, cookie)
    if check_status != 302:
        raise RuntimeError(f"login POST returned {check_status}, expected 302")
    script = workdir / f"login-{name}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {lua_string(body)}\n"
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Cookie"] = {lua_string(cookie)}\n'
    )
    return script


def lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def register_user(port: int) -> None:
    token, cookie = csrf_and_cookie(port, "/register")
    body = urllib.parse.urlencode(
        {
            "csrf_token": token,
            "username": USERNAME,
            "password": PASSWORD,
            "confirm": PASSWORD,
        }
    )
    status, text, _ = request(port, "POST", "/register", body, cookie)
    if status != 302 and "already taken" not in text:
        raise RuntimeError(f"registration failed with {status}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 200])
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="loginapp-bench-"))
    pg = None
    procs: list[subprocess.Popen] = []
    try:
        pg, url, backend = start_database(workdir)
        env = app_env(url)
        results: list[Result] = []
        for kind in ("dev", "gunicorn"):
            proc, port = start_server(kind, env, workdir)
            procs.append(proc)
            register_user(port)
            for scenario, path in (("GET /login", "/login"), ("POST /login", "/login")):
                for conns in args.connections:
                    script = login_script(port, workdir, kind) if scenario[0] == "P" else None
                    output = run_wrk(port, path, conns, args.duration, script)
                    rps, p50, p99, errors = parse_wrk(output)
                    results.append(Result(kind, scenario, conns, rps, p50, p99, errors))
                    print(
                        f"  {kind:8} {scenario:11} c={conns:<3} {rps:8.1f} req/s",
                        flush=True,
                    )
            proc.terminate()
            proc.wait(timeout=30)
        print_table(results, backend, args.duration)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if pg:
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def start_database(workdir: Path):
    """A migrated database for the bench: (server or None, URL, description).

    PostgreSQL started here when its binaries exist (as in production), else SQLite.
    """
    from loginapp.migrate import upgrade
    from tests.pgserver import PostgresServer, find_bin

    pg = None
    if find_bin("initdb"):
        pg = PostgresServer().start()
        url = pg.create_database("loginapp")
        backend = "PostgreSQL (self-started)"
    else:
        url = f"sqlite:///{workdir}/bench.sqlite3"
        backend = "SQLite"
    upgrade(url)
    return pg, url, backend


def app_env(url: str, **extra: str) -> dict:
    """The environment the app servers run with: this URL, a throwaway key, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGINAPP_")}
    env.update(
        LOGINAPP_DATABASE_URL=url,
        LOGINAPP_SECRET_KEY=secrets.token_urlsafe(48),
        LOGINAPP_AUTO_MIGRATE="false",
        LOGINAPP_LOG_LEVEL="WARNING",
        PYTHONPATH=str(APP_DIR),
        **extra,
    )
    return env


def print_table(results: list[Result], backend: str, duration: int) -> None:
    dev = {(r.scenario, r.connections): r for r in results if r.server == "dev"}
    cpus = len(os.sched_getaffinity(0))
    print(f"\nloginapp benchmark: {backend}, {cpus} CPUs, wrk -t2 -d{duration}s, argon2id m=19MiB t=2")
    header = (
        f"{'server':9} {'scenario':12} {'conns':>5} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9}"
        f" {'errors':>7} {'gunicorn/dev':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = ""
        if r.server == "gunicorn" and dev.get((r.scenario, r.connections)):
            base = dev[(r.scenario, r.connections)].rps
            ratio = f"{r.rps / base:.2f}x" if base else "n/a"
        print(
            f"{r.server:9} {r.scenario:12} {r.connections:>5} {r.rps:>9.1f} "
            f"{r.p50_ms:>9.1f} {r.p99_ms:>9.1f} {r.errors:>7} {ratio:>12}"
        )


if __name__ == "__main__":
    sys.exit(main())
