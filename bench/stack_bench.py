"""Benchmark the deployed stack on this machine against Flask's development server.

Run from the repository root:  python bench/stack_bench.py [--duration 6]   (or `make bench`)

Everything in the table is measured in this one run, on this machine:

* GET /login and a full login round trip (GET the login page for its CSRF
  token and cookie, POST the credentials, follow the redirect to the
  dashboard) through the deployed stack (https://<default IPv4>/: nginx ->
  Gunicorn -> PostgreSQL) and through Flask's development server started here
  (bench/app_bench.py's set-up, self-started PostgreSQL), with wrk at 10 and
  200 connections: requests/s, p50/p99 latency, errors; for the round trip
  also completed round trips/s (latencies there are per request);
* requests lost during a rolling update of the app under load
  (`docker service update --force loginapp_app`), counted by a load generator
  that reports every error, bad status or reset;
* the duration of a warm `ansible-playbook site.yml` (nothing to change). A cold
  run (bare host) is measured by the Molecule `default` scenario, not here.

The stack is deployed (site.yml) first if needed, with nginx's per-IP limit on
POST /login raised (see tests/operations/client.py: RELAXED_RATE_LIMIT) so wrk
measures the app, not the 429 page; re-run site.yml without it to restore the
default limit. Needs wrk (apt-get install -y wrk). About 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

import app_bench  # noqa: E402  (also puts app/ on sys.path)
from operations.client import (  # noqa: E402
    RELAXED_RATE_LIMIT,
    STACK,
    Client,
    LoadGenerator,
    Target,
    changed_tasks,
    play_recap,
    run_playbook,
)

USERNAME = "stackbench"
PASSWORD = "stack benchmark passphrase 42"

# A full login round trip per connection, matched by what each response is (wrk
# gives no connection identity): login page -> queue (token, cookie); 302 ->
# queue the session cookie; dashboard showing the user -> one round trip done.
ROUND_TRIP_LUA = r"""
local referer, body_tail, user = %(referer)s, %(body_tail)s, %(user)s
local forms, sessions = {}, {}
trips, bad = 0, 0
local threads = {}

function setup(thread) table.insert(threads, thread) end

function request()
  if #sessions > 0 then
    return wrk.format("GET", "/", {["Cookie"] = table.remove(sessions, 1)})
  end
  if #forms > 0 then
    local f = table.remove(forms, 1)
    return wrk.format("POST", "/login", {["Cookie"] = f[2], ["Referer"] = referer,
      ["Content-Type"] = "application/x-www-form-urlencoded"}, "csrf_token=" .. f[1] .. body_tail)
  end
  return wrk.format("GET", "/login")
end

local function cookie_of(headers)
  local value = headers["Set-Cookie"] or headers["set-cookie"]
  return value and string.match(value, "^[^;]+")
end

function response(status, headers, body)
  if status == 302 then
    local c = cookie_of(headers)
    if c then table.insert(sessions, c) else bad = bad + 1 end
  elseif status == 200 and string.find(body, user, 1, true) then
    trips = trips + 1
  elseif status == 200 then
    local token = string.match(body, 'name="csrf_token" type="hidden" value="([^"]+)"')
    local c = cookie_of(headers)
    if token and c then table.insert(forms, {token, c}) else bad = bad + 1 end
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local t, b = 0, 0
  for _, thread in ipairs(threads) do t = t + thread:get("trips"); b = b + thread:get("bad") end
  io.write(string.format("ROUNDTRIPS %%d BAD %%d\n", t, b))
end
"""


@dataclass
class Row(app_bench.Result):
    """app_bench's result, plus completed login round trips per second."""

    trips_per_s: float | None = None


def lua_string(value: str) -> str:
    return app_bench.lua_string(value)


def round_trip_script(workdir: Path, base_url: str, name: str) -> Path:
    tail = "&" + urllib.parse.urlencode({"username": USERNAME, "password": PASSWORD})
    script = workdir / f"roundtrip-{name}.lua"
    script.write_text(
        ROUND_TRIP_LUA
        % {"referer": lua_string(base_url + "/login"), "body_tail": lua_string(tail), "user": lua_string(USERNAME)}
    )
    return script


def wrk(url: str, connections: int, duration: int, script: Path | None = None) -> str:
    cmd = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    return subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout


def measure(server: str, base_url: str, workdir: Path, connections: list[int], duration: int) -> list[Row]:
    rows = []
    for scenario in ("GET /login", "login round trip"):
        for conns in connections:
            script = round_trip_script(workdir, base_url, server) if scenario != "GET /login" else None
            output = wrk(base_url + "/login", conns, duration, script)
            rps, p50, p99, errors = app_bench.parse_wrk(output)
            trips = None
            if match := re.search(r"ROUNDTRIPS (\d+) BAD (\d+)", output):
                seconds = float(re.search(r"requests in ([\d.]+)(m?s)", output).group(1))
                if re.search(r"requests in [\d.]+ms", output):
                    seconds /= 1000
                trips = int(match.group(1)) / seconds
                errors += int(match.group(2))
            rows.append(Row(server, scenario, conns, rps, p50, p99, errors, trips))
            print(f"  {server:6} {scenario:16} c={conns:<3} {rps:8.1f} req/s", flush=True)
    return rows


def ensure_user(base_url: str, context) -> None:
    Client(base_url, context).register(USERNAME, PASSWORD)  # "already taken" is fine
    client = Client(base_url, context)
    client.login(USERNAME, PASSWORD)
    if not client.logged_in_as(USERNAME):
        raise RuntimeError(f"cannot log in as {USERNAME} on {base_url}")


def rolling_update_loss(target: Target) -> tuple[LoadGenerator, float]:
    with LoadGenerator(target.host, target.ssl_context(), workers=6) as load:
        time.sleep(3)
        started = time.monotonic()
        target.docker("service", "update", "--force", "--detach=false", "--quiet", f"{STACK}_app", timeout=600)
        took = time.monotonic() - started
        time.sleep(3)
    return load, took


def dev_server_rows(workdir: Path, connections: list[int], duration: int) -> tuple[list[Row], str]:
    pg = proc = None
    try:
        pg, url, backend = app_bench.start_database(workdir)
        env = app_bench.app_env(url, LOGINAPP_PROXY_HOPS="0")
        proc, port = app_bench.start_server("dev", env, workdir)
        base = f"http://127.0.0.1:{port}"
        ensure_user(base, None)
        return measure("dev", base, workdir, connections, duration), backend
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        if pg:
            pg.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 200])
    parser.add_argument("--skip-update", action="store_true", help="skip the rolling update measurement")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install -y wrk (make tools)", file=sys.stderr)
        return 2

    target = Target.local(extra_vars=dict(RELAXED_RATE_LIMIT))
    workdir = Path(tempfile.mkdtemp(prefix="loginapp-stack-bench-"))
    try:
        print(f"Deploying/checking the stack (site.yml, inventory {target.inventory}) ...", flush=True)
        first = run_playbook("site.yml", target.inventory, target.extra_vars, log=workdir / "site-1.log")
        if first.returncode != 0:
            print(first.stdout[-4000:], file=sys.stderr)
            return 1
        first_changed = sum(h["changed"] for h in play_recap(first.stdout).values())
        print(f"  site.yml: {first.duration:.0f} s, changed={first_changed}", flush=True)
        warm = run_playbook("site.yml", target.inventory, target.extra_vars, log=workdir / "site-2.log")
        warm_changed = sum(h["changed"] for h in play_recap(warm.stdout).values())
        print(f"  warm site.yml: {warm.duration:.0f} s, changed={warm_changed}", changed_tasks(warm.stdout), flush=True)

        ensure_user(target.base_url, target.ssl_context())
        # wrk verifies nothing; the CA check is ensure_user's (urllib with the project's CA).
        rows = measure("stack", target.base_url, workdir, args.connections, args.duration)
        dev_rows, backend = dev_server_rows(workdir, args.connections, args.duration)
        rows += dev_rows

        load, took = (None, 0.0) if args.skip_update else rolling_update_loss(target)
        print_report(rows, backend, args.duration, target, warm, warm_changed, load, took)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def print_report(rows, backend, duration, target, warm, warm_changed, load, took) -> None:
    cpus = len(os.sched_getaffinity(0))
    load_avg = os.getloadavg()[0]
    print(
        f"\nloginapp stack benchmark: {cpus} CPUs (load {load_avg:.1f}), wrk -t2 -d{duration}s, argon2id m=19MiB t=2\n"
        f"stack = {target.base_url}/ (nginx TLS -> Gunicorn x2 replicas -> PostgreSQL in Swarm); "
        f"dev = flask run on 127.0.0.1 (HTTP, {backend})"
    )
    header = (
        f"{'server':7} {'scenario':17} {'conns':>5} {'req/s':>8} {'trips/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'stack/dev':>9}"
    )
    print(header)
    print("-" * len(header))
    dev = {(r.scenario, r.connections): r for r in rows if r.server == "dev"}
    for r in rows:
        ratio = ""
        if r.server == "stack" and (base := dev.get((r.scenario, r.connections))):
            mine, theirs = (r.trips_per_s, base.trips_per_s) if r.trips_per_s is not None else (r.rps, base.rps)
            ratio = f"{mine / theirs:.2f}x" if theirs else "n/a"
        trips = f"{r.trips_per_s:.1f}" if r.trips_per_s is not None else ""
        print(
            f"{r.server:7} {r.scenario:17} {r.connections:>5} {r.rps:>8.1f} {trips:>8} "
            f"{r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.errors:>7} {ratio:>9}"
        )
    print("(round trip = GET /login + POST /login + GET / dashboard; its latencies are per request)")
    if load is not None:
        print(
            f"\nRolling update under load (docker service update --force {STACK}_app, {took:.0f} s): "
            f"{load.failed} of {load.total} requests lost ({load.ok} ok; {dict(load.errors)})"
        )
    print(
        f"Warm site.yml (nothing to change): {warm.duration:.0f} s, changed={warm_changed}. "
        "Cold runs (bare host -> stack) are timed by `molecule test -s default`."
    )


if __name__ == "__main__":
    sys.exit(main())
