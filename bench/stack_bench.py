"""Benchmark the deployed stack on this machine against raw Gunicorn and Flask's development server.

Run from the repository root:  python bench/stack_bench.py [--duration 6]   (or `make bench`)

Everything in the table is measured in this one run, on this machine:

* GET /login and a full login round trip (GET the login page for its CSRF
  token and cookie, POST the credentials, follow the redirect to the
  dashboard) through the deployed stack (https://<default IPv4>/: nginx ->
  Gunicorn -> PostgreSQL), through raw Gunicorn with the project's
  configuration and through Flask's development server, both started here
  (loginapp_kit.appserver: self-started PostgreSQL, plain HTTP on loopback),
  with wrk at 10 and 200 connections: requests/s, p50/p99 latency, errors;
  for the round trip also completed round trips/s (latencies there are per
  request); ratios stack/raw Gunicorn and stack/dev;
* a static file (the app's stylesheet) served by the stack's nginx and by a
  bare nginx started here (Debian's, same certificate, TLS, nothing else
  configured): ratio stack/bare; as root, also the stack's nginx reached from
  inside its container's network namespace (wrk under nsenter), which shows
  what the host's path into the container (bridge, NAT, veth) costs;
* HTTP/2 against HTTP/1.1 through the stack, for the static file and GET
  /login, with h2load (wrk speaks HTTP/1.1 only): one request in flight per
  connection with each protocol, and HTTP/2 with ten streams on a tenth of
  the connections (a browser's one connection per site); skipped without
  h2load;
* the stack again with nginx's kept-alive connections to the app turned off
  (`stack_nginx_upstream_keepalive: 0`, deployed for the measurement and
  then deployed back): the ratio on/off;
* where the stack's CPU goes: for GET /login, the login round trip and the
  static file at the most connections, the CPU each of the stack's containers
  (their cgroups), the engine's own processes (dockerd, containerd and the
  shims, which carry the containers' logs), wrk and the rest of the machine
  (mostly the kernel's network path) used per request, and how busy each CPU
  of the machine was (an idle CPU under load means something is pinned);
* requests lost during a rolling update of the app under load
  (`docker service update --force` of the app service), counted by the kit's
  LoadGenerator, which reports every error, bad status or reset;
* the duration of a warm `ansible-playbook site.yml` (nothing to change). A cold
  run (bare host) is measured by bench/cluster_bench.py on the Molecule
  `default` scenario's host, not here.

The stack is deployed (site.yml) first if needed, with nginx's per-IP limits
on POST /login and on requests in progress lifted
(loginapp_kit.deployment.RELAXED_RATE_LIMIT, which Target.local() applies) so
wrk measures the app, not the 429 page; re-run site.yml without it to restore
the default limits. Needs wrk, nginx and h2load (`make tools`). About 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loginapp_kit import REPO, appserver, h2load, html, wrk
from loginapp_kit.client import Client
from loginapp_kit.deployment import Target
from loginapp_kit.load import LoadGenerator
from loginapp_kit.pgserver import free_port
from loginapp_kit.playbook import PlaybookRun
from loginapp_kit.wait import wait_for

USERNAME = "stackbench"
PASSWORD = "stack benchmark passphrase 42"
# The stack measured with stack_nginx_upstream_keepalive: 0.
KEEPALIVE_OFF = "stack-ka0"
IN_NETNS = "stack-ns"  # the stack's nginx reached from inside its container's network namespace
STATIC_DIR = REPO / "app" / "loginapp" / "static"
STATIC_FILE = "style.css"


def static_url(base_url: str) -> str:
    """The app's stylesheet under ``base_url``: the stack's or a bare nginx's."""
    return f"{base_url}/static/{STATIC_FILE}"


# Only what serving a file over TLS needs: the baseline for the stack's nginx.
BARE_NGINX_CONF = """
worker_processes auto;
pid %(work)s/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    client_body_temp_path %(work)s/body;
    proxy_temp_path %(work)s/proxy;
    fastcgi_temp_path %(work)s/fastcgi;
    uwsgi_temp_path %(work)s/uwsgi;
    scgi_temp_path %(work)s/scgi;
    server {
        listen 127.0.0.1:%(port)d ssl;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        ssl_protocols TLSv1.2 TLSv1.3;
        location /static/ { alias %(static)s/; }
    }
}
"""

# A full login round trip per connection, matched by what each response is (wrk
# gives no connection identity): login page -> queue (token, cookie); 302 ->
# queue the session cookie; dashboard showing the user -> one round trip done.
# The token pattern is the one CSRF parser outside loginapp_kit.html, because
# wrk's Lua cannot call Python; round_trip_script checks it against the real
# page (and the kit's token) before every run.
CSRF_LUA_PATTERN = 'name="csrf_token" type="hidden" value="([^"]+)"'
ROUND_TRIP_LUA = r"""
local referer, body_tail, user, token_pattern = %(referer)s, %(body_tail)s, %(user)s, %(pattern)s
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
    local token = string.match(body, token_pattern)
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


def round_trip_script(base_url: str, new_client: Callable[[], Client]) -> str:
    """The round-trip Lua for ``base_url``, once its token pattern is seen to fit a real login page.

    The token is loginapp_kit.html's; the pattern, with that token in place of
    its capture, must be in the page. A template change then fails here, not
    as a table of "bad" responses.
    """
    page = new_client().get("/login").text
    if CSRF_LUA_PATTERN.replace('([^"]+)', html.csrf_token(page)) not in page:
        raise RuntimeError(f"the round-trip script's CSRF pattern {CSRF_LUA_PATTERN} no longer fits the login page")
    tail = "&" + urllib.parse.urlencode({"username": USERNAME, "password": PASSWORD})
    return ROUND_TRIP_LUA % {
        "referer": wrk.lua_string(base_url + "/login"),
        "body_tail": wrk.lua_string(tail),
        "user": wrk.lua_string(USERNAME),
        "pattern": wrk.lua_string(CSRF_LUA_PATTERN),
    }


SCENARIOS = ("GET /login", "login round trip")


def scenario_script(scenario: str, base_url: str, new_client: Callable[[], Client]) -> str | None:
    """The wrk script of a scenario against ``base_url``/login (none: plain GETs)."""
    return round_trip_script(base_url, new_client) if scenario == "login round trip" else None


def measure(server: str, base_url: str, new_client: Callable[[], Client], connections: list[int],
            duration: int) -> list[wrk.Row]:  # fmt: skip
    """wrk against one server; ``new_client`` makes browsers for it (set-up and checks only)."""
    appserver.ensure_user(new_client, USERNAME, PASSWORD)
    rows = []
    for scenario in SCENARIOS:
        for conns in connections:
            run = wrk.run(base_url + "/login", conns, duration, scenario_script(scenario, base_url, new_client))
            errors, trips = run.errors, None
            if match := re.search(r"ROUNDTRIPS (\d+) BAD (\d+)", run.output):
                trips = int(match.group(1)) / run.elapsed if run.elapsed else 0.0
                errors += int(match.group(2))
            rows.append(wrk.Row(server, scenario, conns, run.rps, run.p50_ms, run.p99_ms, errors, trips))
            print(f"  {server:6} {scenario:16} c={conns:<3} {run.rps:8.1f} req/s", flush=True)
    return rows


ENGINE_PROCESSES = ("dockerd", "containerd", "containerd-shim")  # /proc/PID/comm is cut at 15 characters


def container_cgroup_cpu(container_id: str) -> Path | None:
    """The file holding a container's CPU time: cgroup v1 cpuacct.usage (ns) or v2 cpu.stat (usage_usec)."""
    for pattern in (f"cpuacct/**/{container_id}/cpuacct.usage", f"**/*{container_id}*/cpu.stat"):
        if found := sorted(Path("/sys/fs/cgroup").glob(pattern)):
            return found[0]
    return None


def cpu_seconds(target: Target) -> dict[str, float]:
    """CPU seconds used so far by each running container of the stack and, together, by the engine's processes."""
    seconds: dict[str, float] = {}
    listing = target.docker(
        "ps", "--no-trunc", "--filter", f"label=com.docker.stack.namespace={target.stack}",
        "--format", '{{.ID}} {{.Label "com.docker.swarm.service.name"}}',
    )  # fmt: skip
    for line in listing.splitlines():
        container_id, service = line.split()
        if (path := container_cgroup_cpu(container_id)) is None:
            continue
        text = path.read_text()
        used = int(text) / 1e9 if path.name == "cpuacct.usage" else int(text.split("usage_usec")[1].split()[0]) / 1e6
        name = service.removeprefix(f"{target.stack}_")
        seconds[name] = seconds.get(name, 0.0) + used
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            comm = (stat.parent / "comm").read_text().strip()
            fields = stat.read_text().rsplit(")", 1)[1].split()
            in_container = re.search(r"[0-9a-f]{64}", (stat.parent / "cgroup").read_text())
        except OSError:  # the process ended
            continue
        if comm.startswith(ENGINE_PROCESSES) and not in_container:  # not a test host's own engine
            seconds["engine"] = seconds.get("engine", 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def cpu_busy() -> list[tuple[int, int]]:
    """(busy, total) jiffies of each CPU so far, from /proc/stat."""
    counts = []
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d+ ", line):
            values = [int(v) for v in line.split()[1:]]
            counts.append((sum(values) - values[3] - values[4], sum(values)))  # idle and iowait are not busy
    return counts


def cpu_shares(target: Target, connections: int, duration: int) -> list[tuple[str, wrk.WrkResult, dict, list]]:
    """GET /login, the login round trip and the static file through the stack, each with its CPU per component
    (``other``: the rest of the machine's busy CPU, mostly the kernel's network path) and per CPU."""
    # The static file first: logins queued in the app when wrk stops would still be hashed during the next run.
    cases = [("static file", static_url(target.base_url), None)]
    cases += [(s, target.base_url + "/login", scenario_script(s, target.base_url, target.client)) for s in SCENARIOS]
    ticks = os.sysconf("SC_CLK_TCK")
    results = []
    for scenario, url, script in cases:
        before, busy_before, wrk_before = cpu_seconds(target), cpu_busy(), os.times()
        run = wrk.run(url, connections, duration, script)
        after, busy_after, wrk_after = cpu_seconds(target), cpu_busy(), os.times()
        used = {name: after[name] - before.get(name, 0.0) for name in after}
        used["wrk"] = (wrk_after.children_user + wrk_after.children_system) - (
            wrk_before.children_user + wrk_before.children_system
        )
        all_busy = sum(b1 - b0 for (b0, _), (b1, _) in zip(busy_before, busy_after, strict=True)) / ticks
        used["other"] = max(0.0, all_busy - sum(used.values()))
        busy = [
            (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
            for (b0, t0), (b1, t1) in zip(busy_before, busy_after, strict=True)
        ]
        results.append((scenario, run, used, busy))
        print(f"  stack  {scenario:16} c={connections:<3} CPU per request measured", flush=True)
    return results


def keepalive_off_rows(target: Target, workdir: Path, connections: list[int], duration: int) -> list[wrk.Row]:
    """The stack with nginx opening a new connection to the app per request; the default is deployed back after."""

    def deploy(log: str, **extra) -> None:
        run = target.run_playbook("playbooks/stack.yml", log=workdir / log, **extra)
        if not run.ok:
            raise RuntimeError(f"playbooks/stack.yml {extra} failed:\n{run.tail(40)}")

    deploy("keepalive-off.log", stack_nginx_upstream_keepalive=0)
    try:
        return [
            wrk.Row(KEEPALIVE_OFF, r.scenario, r.connections, r.rps, r.p50_ms, r.p99_ms, r.errors, r.trips_per_s)
            for r in measure("stack", target.base_url, target.client, connections, duration)
        ]
    finally:
        deploy("keepalive-on.log")


def rolling_update_loss(target: Target) -> tuple[LoadGenerator, float]:
    with target.load(workers=6) as load:
        time.sleep(3)
        started = time.monotonic()
        target.docker("service", "update", "--force", "--detach=false", "--quiet", target.service("app"), timeout=600)
        took = time.monotonic() - started
        time.sleep(3)
    return load, took


def app_server_rows(workdir: Path, connections: list[int], duration: int) -> tuple[list[wrk.Row], str]:
    """Flask's development server and raw Gunicorn (appserver.KINDS) on loopback, sharing one database."""
    rows = []
    with appserver.database(workdir) as db:
        for kind in appserver.KINDS:
            with appserver.serve(kind, db.url, workdir) as server:
                rows += measure(kind, server.base_url, server.client, connections, duration)
        return rows, db.backend


def nginx_netns(target: Target) -> tuple[int, int] | None:
    """The PID of the stack's nginx container and the container port published as the site's HTTPS port:
    wrk run in that network namespace reaches nginx without the host's bridge, NAT and veth. None unless root."""
    if os.geteuid() != 0 or not shutil.which("nsenter"):
        return None
    container = json.loads(target.docker("inspect", target.container("nginx")))[0]
    https = str(urllib.parse.urlsplit(target.base_url).port or 443)
    for port, bindings in container["NetworkSettings"]["Ports"].items():
        if any(binding["HostPort"] == https for binding in bindings or []):
            return container["State"]["Pid"], int(port.split("/")[0])
    return None


def static_rows(target: Target, workdir: Path, connections: list[int], duration: int) -> list[wrk.Row]:
    """The app's stylesheet from the stack's nginx, from a bare nginx with the deployment's certificate and, as
    root, from the stack's nginx again inside its container's network namespace (nginx_netns)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    tls, port, work = target.outputs("tls"), free_port(), workdir / "bare-nginx"
    work.mkdir()
    conf = work / "nginx.conf"
    conf.write_text(BARE_NGINX_CONF % {
        "work": work, "port": port, "static": STATIC_DIR,
        "cert": tls["tls_server_cert_path"], "key": tls["tls_server_key_path"],
    })  # fmt: skip
    globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")  # workers could not read the files
    rows = []
    with (work / "nginx.log").open("w") as log:
        bare = subprocess.Popen([nginx, "-c", str(conf), "-e", "stderr", "-g", globals_], stdout=log, stderr=log)
    try:
        bare_url = static_url(f"https://127.0.0.1:{port}")
        if not wait_for(
            lambda: bare.poll() is None and wrk.run(bare_url, 1, 1).errors == 0, 20, 0.5, errors=(RuntimeError,)
        ):
            raise RuntimeError(f"bare nginx did not serve {bare_url}:\n{(work / 'nginx.log').read_text()[-2000:]}")
        servers = [("stack", static_url(target.base_url), None), ("nginx", bare_url, None)]
        if inside := nginx_netns(target):
            pid, port = inside
            servers.append((IN_NETNS, static_url(f"https://127.0.0.1:{port}"), pid))
        for server, url, netns_of in servers:
            for conns in connections:
                run = wrk.run(url, conns, duration, netns_of=netns_of)
                rows.append(wrk.Row(server, "static file", conns, run.rps, run.p50_ms, run.p99_ms, run.errors))
                print(f"  {server:8} static file      c={conns:<3} {run.rps:8.1f} req/s", flush=True)
    finally:
        bare.send_signal(signal.SIGQUIT)
        bare.wait(timeout=30)
    return rows


HTTP2_STREAMS = 10  # HTTP/2 streams per connection in the multiplexed rows


@dataclass
class Http2Row:
    scenario: str
    connections: int
    streams: int  # requests in flight per connection
    run: h2load.H2loadResult


def http2_rows(target: Target, rows: list[wrk.Row], duration: int) -> list[Http2Row]:
    """h2load through the stack, at each connection count of the stack's wrk rows (whose req/s sizes the runs).

    HTTP/1.1 and HTTP/2 with one request in flight per connection, then HTTP/2 with HTTP2_STREAMS streams on a
    tenth of the connections: as many requests in flight.
    """
    urls = {"static file": static_url(target.base_url), "GET /login": target.base_url + "/login"}
    results = []
    for row in rows:
        if row.server != "stack" or row.scenario not in urls:
            continue
        url, conns = urls[row.scenario], row.connections
        for streams, connections, http1 in ((1, conns, True), (1, conns, False),
                                            (HTTP2_STREAMS, max(1, conns // HTTP2_STREAMS), False)):  # fmt: skip
            run = h2load.run_for(url, connections, duration, row.rps, streams=streams, http1=http1)
            results.append(Http2Row(row.scenario, connections, streams, run))
            print(f"  h2load {row.scenario:12} {run.protocol:8} c={connections:<3} m={streams:<2} {run.rps:8.1f} req/s",
                  flush=True)  # fmt: skip
    return results


def print_http2(results: list[Http2Row]) -> None:
    print(
        "\nHTTP/2 against HTTP/1.1 through the stack (h2load; h2/h1: against HTTP/1.1 with as many requests in flight):"
    )
    print(f"{'scenario':12} {'protocol':9} {'conns':>5} {'streams':>7} {'req/s':>9} {'errors':>7} {'h2/h1':>6}")
    h1 = {(r.scenario, r.connections): r.run.rps for r in results if r.run.protocol == "http/1.1"}
    for r in results:
        baseline = h1.get((r.scenario, r.connections * r.streams))
        ratio = f"{r.run.rps / baseline:.2f}x" if r.run.protocol == "h2" and baseline else ""
        print(
            f"{r.scenario:12} {r.run.protocol:9} {r.connections:>5} {r.streams:>7} {r.run.rps:>9.1f} "
            f"{r.run.errors:>7} {ratio:>6}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, nargs="+", default=[10, 200])
    parser.add_argument("--skip-update", action="store_true", help="skip the rolling update measurement")
    parser.add_argument(
        "--skip-keepalive-off", action="store_true", help="skip the stack without kept-alive app connections"
    )
    parser.add_argument(
        "-e", "--extra-var", action="append", default=[], metavar="NAME=VALUE",
        help="deploy with this variable (repeatable), to compare a setting against its default",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.extra_var):
        parser.error("-e takes NAME=VALUE")
    if not wrk.available():
        print("wrk not found: apt-get install -y wrk (make tools)", file=sys.stderr)
        return 2

    target = Target.local()
    target.extra_vars.update(item.split("=", 1) for item in args.extra_var)
    with tempfile.TemporaryDirectory(prefix="loginapp-stack-bench-") as tmp:
        workdir = Path(tmp)
        print(f"Deploying/checking the stack (site.yml, inventory {target.inventory}) ...", flush=True)
        first = target.run_playbook("site.yml", log=workdir / "site-1.log")
        if not first.ok:
            print(first.tail(80), file=sys.stderr)
            return 1
        print(f"  site.yml: {first.duration:.0f} s, changed={first.changed}", flush=True)
        warm = target.run_playbook("site.yml", log=workdir / "site-2.log")
        if not warm.ok:
            print(warm.tail(80), file=sys.stderr)
            return 1
        print(f"  warm site.yml: {warm.duration:.0f} s, changed={warm.changed}", warm.changed_tasks(), flush=True)

        # wrk verifies no certificate; ensure_user's browser (the project's CA only) checks the site first.
        rows = measure("stack", target.base_url, target.client, args.connections, args.duration)
        app_rows, backend = app_server_rows(workdir, args.connections, args.duration)
        rows += app_rows + static_rows(target, workdir, args.connections, args.duration)
        http2 = http2_rows(target, rows, args.duration) if h2load.available() else []
        if not args.skip_keepalive_off:
            rows += keepalive_off_rows(target, workdir, args.connections, args.duration)

        shares = cpu_shares(target, max(args.connections), args.duration)
        load, took = (None, 0.0) if args.skip_update else rolling_update_loss(target)
        print_report(rows, backend, args.duration, target, warm, load, took)
        if http2:
            print_http2(http2)
        else:
            print("\nHTTP/2 not measured: h2load not found (apt-get install -y nghttp2-client, make tools)")
        print_cpu_shares(shares, max(args.connections))
    return 0


def print_report(rows: list[wrk.Row], backend: str, duration: int, target: Target, warm: PlaybookRun,
                 load: LoadGenerator | None, took: float) -> None:  # fmt: skip
    cpus = len(os.sched_getaffinity(0))
    load_avg = os.getloadavg()[0]
    replicas = target.service_spec("app")["Mode"]["Replicated"]["Replicas"]
    print(
        f"\nloginapp stack benchmark: {cpus} CPUs (load {load_avg:.1f}), wrk -t2 -d{duration}s, argon2id m=19MiB t=2\n"
        f"stack = {target.base_url}/ (nginx TLS -> Gunicorn x{replicas} replicas -> PostgreSQL in Swarm); "
        f"gunicorn = raw Gunicorn, dev = flask run (both on 127.0.0.1, HTTP, {backend}); "
        f"nginx = a bare nginx over TLS on 127.0.0.1; {IN_NETNS} = the stack's nginx from inside its container's "
        f"network namespace (no bridge, NAT or veth); {KEEPALIVE_OFF} = the stack, stack_nginx_upstream_keepalive: 0"
        f"\ndeployed with: {' '.join(f'{k}={v}' for k, v in sorted(target.extra_vars.items()))}"
    )
    header = (
        f"{'server':9} {'scenario':17} {'conns':>5} {'req/s':>8} {'trips/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'stack/raw':>9} {'stack/dev':>9} {'stack/bare':>10} {'on/off':>7}"
    )
    print(header)
    print("-" * len(header))
    cells = {(r.server, r.scenario, r.connections): r for r in rows}

    def ratio(r: wrk.Row, baseline: str) -> str:
        base = cells.get((baseline, r.scenario, r.connections))
        if r.server not in ("stack", IN_NETNS) or base is None:
            return ""
        mine, theirs = (r.trips_per_s, base.trips_per_s) if r.trips_per_s is not None else (r.rps, base.rps)
        return f"{mine / theirs:.2f}x" if theirs else "n/a"

    for r in sorted(rows, key=lambda r: (r.scenario, r.connections, r.server != "stack", r.server)):
        trips = f"{r.trips_per_s:.1f}" if r.trips_per_s is not None else ""
        print(
            f"{r.server:9} {r.scenario:17} {r.connections:>5} {r.rps:>8.1f} {trips:>8} "
            f"{r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.errors:>7} "
            f"{ratio(r, 'gunicorn'):>9} {ratio(r, 'dev'):>9} {ratio(r, 'nginx'):>10} {ratio(r, KEEPALIVE_OFF):>7}"
        )
    print("(round trip = GET /login + POST /login + GET / dashboard; its latencies are per request)")
    if load is not None:
        print(
            f"\nRolling update under load (docker service update --force {target.service('app')}, {took:.0f} s): "
            f"{load.failed} of {load.total} requests lost ({load.ok} ok; {dict(load.errors)})"
        )
    print(
        f"Warm site.yml (nothing to change): {warm.duration:.0f} s, changed={warm.changed}. "
        "Cold runs (bare host -> stack) are timed by bench/cluster_bench.py (Molecule `default` scenario)."
    )


def print_cpu_shares(shares: list[tuple[str, wrk.WrkResult, dict, list]], connections: int) -> None:
    print(f"\nWhere the stack's CPU goes (ms of CPU per request, wrk at {connections} connections):")
    names = sorted({name for _, _, used, _ in shares for name in used}, key=lambda n: (n in ("wrk", "other"), n))
    print(f"{'scenario':17} {'req/s':>8} " + " ".join(f"{n:>9}" for n in names) + f" {'sum':>7}  busy per CPU")
    for scenario, run, used, busy in shares:
        per_request = {n: 1000 * used.get(n, 0.0) / run.requests if run.requests else 0.0 for n in names}
        print(
            f"{scenario:17} {run.rps:>8.1f} " + " ".join(f"{per_request[n]:>9.3f}" for n in names)
            + f" {sum(per_request.values()):>7.3f}  " + " / ".join(f"{100 * b:.0f}%" for b in busy)
        )  # fmt: skip
    print("(engine = dockerd, containerd and the shims, which carry every line the containers log;")
    print(" other = the rest of the machine's busy CPU: the kernel's network path to nginx, other processes)")


if __name__ == "__main__":
    sys.exit(main())
