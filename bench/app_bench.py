"""Benchmark loginapp: Flask's development server against Gunicorn (production config).

Run from the repository root:  python bench/app_bench.py [--duration 6]

Both servers share one self-started PostgreSQL (SQLite when initdb is missing)
and listen on free loopback ports (loginapp_kit.appserver). wrk loads GET
/login and a full login POST (CSRF token fetched first, argon2id verification
with the OWASP parameters) at 10 and 200 connections, then a table with
requests/s, p50/p99 latency, errors and the Gunicorn/dev ratio is printed.
Needs `wrk` (apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import urllib.parse
from pathlib import Path

from loginapp_kit import appserver, html, wrk

USERNAME = "benchuser"
PASSWORD = "benchmark passphrase 42"


def login_script(server: appserver.AppServer) -> str:
    """Lua for wrk: every request POSTs the same full login (CSRF token and its session cookie).

    The form (its CSRF token) comes from a fresh browser's login page; that
    browser's own login with it must succeed (302) before wrk repeats it, so a
    CSRF or password problem fails here instead of filling the table with 400s.
    """
    client = server.client()
    page = client.get("/login")
    html.csrf_token(page.text)  # the form must carry one
    credentials = {"username": USERNAME, "password": PASSWORD}
    body = urllib.parse.urlencode({**html.form(page.text).fields, **credentials})
    cookie = "; ".join(f"{c.name}={c.value}" for c in client.cookies)  # the session the token belongs to
    check = client.submit_page(page, credentials, follow=False)
    if check.status != 302:
        raise RuntimeError(f"login POST returned {check.status}, expected 302")
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {wrk.lua_string(body)}\n"
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Referer"] = {wrk.lua_string(page.url)}\n'
        f'wrk.headers["Cookie"] = {wrk.lua_string(cookie)}\n'
    )


def measure(server: appserver.AppServer, connections: list[int], duration: int) -> list[wrk.Row]:
    results = []
    appserver.ensure_user(server.client, USERNAME, PASSWORD)
    for scenario in ("GET /login", "POST /login"):
        for conns in connections:
            script = login_script(server) if scenario == "POST /login" else None
            run = wrk.run(server.base_url + "/login", conns, duration, script)
            results.append(wrk.Row(server.kind, scenario, conns, run.rps, run.p50_ms, run.p99_ms, run.errors))
            print(f"  {server.kind:8} {scenario:11} c={conns:<3} {run.rps:8.1f} req/s", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 200])
    args = parser.parse_args(argv)
    if not wrk.available():
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="loginapp-bench-") as tmp, appserver.database(Path(tmp)) as db:
        results: list[wrk.Row] = []
        for kind in appserver.KINDS:
            with appserver.serve(kind, db.url, Path(tmp)) as server:
                results += measure(server, args.connections, args.duration)
        print_table(results, db.backend, args.duration)
    return 0


def print_table(results: list[wrk.Row], backend: str, duration: int) -> None:
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
