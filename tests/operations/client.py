"""Operating the deployed loginapp stack from the controller, for tests and the bench.

Standard library only, so bench/stack_bench.py imports it without pytest:

* ``Target``: where a deployment is (inventory, public URL, CA, how to reach
  its Docker engine) - this machine's ``inventory/local`` or a Molecule host;
* ``Client``: a browser-like HTTPS client (cookie jar, CSRF token, same-origin
  Referer) with ``register`` / ``login`` / ``dashboard``;
* ``LoadGenerator``: threads sending steady GETs through nginx, counting
  every response, bad status and connection error;
* ``run_playbook`` / ``play_recap``: run a playbook of the repository and read
  its PLAY RECAP.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STACK = "loginapp"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
# Tests and the bench POST to /login and /register from one IP far more than nginx's default
# 10/min allows. One setting for both, so switching between them never changes nginx's config.
RELAXED_RATE_LIMIT = {"stack_nginx_login_rate": "100r/s", "stack_nginx_login_burst": 1000}


def default_ipv4() -> str:
    """This machine's default-route source address (what site.yml's smoke test uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("1.1.1.1", 53))  # no packet is sent
        return probe.getsockname()[0]


@dataclass
class Target:
    """A deployment: its inventory, public address, CA, and the Docker CLI of its first manager."""

    inventory: Path
    host: str
    ca_cert: Path
    # argv prefix that runs `docker` on the manager (["docker"] here, or via `docker exec` into a test host).
    docker_cmd: list[str] = field(default_factory=lambda: ["docker"])
    # Extra variables passed to every playbook run (e.g. the relaxed rate limit).
    extra_vars: dict = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"https://{self.host}"

    @classmethod
    def local(cls, **kwargs) -> Target:
        """This machine's deployment (inventory/local, ~/.local/share/loginapp/local)."""
        return cls(
            inventory=REPO / "inventory" / "local",
            host=os.environ.get("LOGINAPP_HOST") or default_ipv4(),
            ca_cert=Path.home() / ".local/share/loginapp/local/tls/ca.crt",
            **kwargs,
        )

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def docker(self, *args: str, check: bool = True, timeout: float = 300) -> str:
        result = subprocess.run([*self.docker_cmd, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip()

    def service_image(self, service: str) -> str:
        """Image (without digest) that the service's spec asks for."""
        image = self.docker(
            "service", "inspect", f"{STACK}_{service}", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"
        )
        return image.split("@", 1)[0]

    def running_images(self, service: str) -> set[str]:
        """Images of the service's tasks that are running now."""
        out = self.docker(
            "service", "ps", f"{STACK}_{service}", "--filter", "desired-state=running", "--format", "{{.Image}}"
        )
        return {line.split("@", 1)[0] for line in out.splitlines() if line}

    def update_state(self, service: str) -> str:
        return self.docker(
            "service", "inspect", f"{STACK}_{service}", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}"
        )

    def stack_running(self) -> bool:
        out = self.docker("stack", "services", STACK, "--format", "{{.Name}} {{.Replicas}}", check=False)
        lines = [line.split() for line in out.splitlines() if line]
        return len(lines) == 3 and all(r.split("/")[0] == r.split("/")[1].split()[0] != "0" for _, r, *_ in lines)

    def remove_stack_and_volume(self, timeout: float = 180) -> None:
        """`docker stack rm`, wait until its containers and network are gone, then drop the db volume."""
        self.docker("stack", "rm", STACK, check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={STACK}", check=False)
            nets = self.docker(
                "network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}", check=False
            )
            if not left and not nets:
                break
            time.sleep(2)
        else:
            raise RuntimeError("stack containers still present after docker stack rm")
        # The volume can stay busy for a moment after the container is gone.
        while True:
            result = subprocess.run(
                [*self.docker_cmd, "volume", "rm", f"{STACK}_db-data"], capture_output=True, text=True, check=False
            )
            if result.returncode == 0 or "no such volume" in result.stderr.lower():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"volume not removed: {result.stderr}")
            time.sleep(2)


# --- HTTP -------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@dataclass
class Response:
    status: int
    url: str
    headers: object
    text: str


class Client:
    """A browser-like HTTPS client: cookie jar, CA verification, CSRF token, same-origin Referer."""

    def __init__(self, base_url: str, context: ssl.SSLContext | None = None, timeout: float = 30):
        self.base_url = base_url.rstrip("/")
        self.cookies = http.cookiejar.CookieJar()
        self.timeout = timeout
        handlers = [urllib.request.HTTPCookieProcessor(self.cookies), urllib.request.HTTPSHandler(context=context)]
        self._follow = urllib.request.build_opener(*handlers)
        self._nofollow = urllib.request.build_opener(*handlers, _NoRedirect)

    @classmethod
    def for_target(cls, target: Target) -> Client:
        return cls(target.base_url, target.ssl_context())

    def url(self, path: str) -> str:
        return path if "://" in path else self.base_url + path

    def request(self, method: str, path: str, data: dict | None = None, follow: bool = True, referer=None) -> Response:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.url(path), data=body, method=method)
        req.add_header("Referer", referer or self.url(path))  # Flask-WTF's HTTPS check
        opener = self._follow if follow else self._nofollow
        try:
            with opener.open(req, timeout=self.timeout) as resp:
                return Response(resp.status, resp.url, resp.headers, resp.read().decode())
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, err.url, err.headers, err.read().decode())

    def get(self, path: str, **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def csrf_token(self, path: str) -> str:
        page = self.get(path)
        match = CSRF_RE.search(page.text)
        if not match:
            raise AssertionError(f"no CSRF token on {path} (status {page.status})")
        return match.group(1)

    def post_form(self, path: str, fields: dict, follow: bool = True) -> Response:
        """GET the form for its CSRF token, then POST it (as a browser submits it)."""
        token = self.csrf_token(path)
        return self.request("POST", path, {"csrf_token": token, **fields}, follow=follow, referer=self.url(path))

    def register(self, username: str, password: str) -> Response:
        return self.post_form("/register", {"username": username, "password": password, "confirm": password})

    def login(self, username: str, password: str) -> Response:
        """Full round trip: login page (CSRF), POST credentials, follow the redirect to the dashboard."""
        return self.post_form("/login", {"username": username, "password": password})

    def logged_in_as(self, username: str) -> bool:
        page = self.get("/")
        return page.status == 200 and page.url.rstrip("/") == self.base_url and username in page.text


def register_and_login(target_or_url, context, username: str, password: str) -> bool:
    """Register ``username`` (ignoring "already taken"), log in with a fresh client, return success."""
    Client(target_or_url, context).register(username, password)
    client = Client(target_or_url, context)
    client.login(username, password)
    return client.logged_in_as(username)


# --- load --------------------------------------------------------------------------------


class LoadGenerator:
    """Steady GET traffic through nginx from ``workers`` threads, every outcome counted.

    Each thread keeps one HTTPS keep-alive connection and alternates through
    ``paths``. Like a browser, a request that fails on a *reused* idle
    connection before any response byte (the server closed it between two
    requests) is retried once on a new connection and counted in
    ``stale_retries``, not as an error; any other failure - a refused or reset
    connection, a timeout, a status outside 2xx/3xx - is an error.
    """

    def __init__(self, host: str, context: ssl.SSLContext, workers: int = 6, paths=("/login", "/healthz"),
                 port: int = 443, pause: float = 0.02, timeout: float = 15):  # fmt: skip
        self.host, self.port, self.context = host, port, context
        self.workers, self.paths, self.pause, self.timeout = workers, paths, pause, timeout
        self.ok = 0
        self.stale_retries = 0
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()  # kind -> count
        self.error_log: list[str] = []  # first few errors, with time
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = self.stopped = 0.0

    @property
    def total(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=self.timeout)

    def _record_error(self, kind: str, detail: str) -> None:
        with self._lock:
            self.errors[kind] += 1
            if len(self.error_log) < 20:
                self.error_log.append(f"{time.monotonic() - self.started:7.2f}s {kind}: {detail}")

    def _once(self, conn, path):
        conn.request("GET", path, headers={"User-Agent": "loginapp-loadgen"})
        resp = conn.getresponse()
        resp.read()
        return resp

    def _run(self, index: int) -> None:
        conn, reused, n = None, False, index
        while not self._stop.is_set():
            path = self.paths[n % len(self.paths)]
            n += 1
            try:
                if conn is None:
                    conn, reused = self._connect(), False
                try:
                    resp = self._once(conn, path)
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    if not reused:
                        raise
                    # The idle keep-alive connection was closed under us: retry once, fresh.
                    with self._lock:
                        self.stale_retries += 1
                    conn.close()
                    conn, reused = self._connect(), False
                    resp = self._once(conn, path)
                reused = True
                with self._lock:
                    self.statuses[resp.status] += 1
                if 200 <= resp.status < 400:
                    with self._lock:
                        self.ok += 1
                else:
                    self._record_error(f"HTTP {resp.status}", path)
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self._record_error(type(exc).__name__, f"{path}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def start(self) -> LoadGenerator:
        self.started = time.monotonic()
        for i in range(self.workers):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True, name=f"load-{i}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> LoadGenerator:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        self.stopped = time.monotonic()
        return self

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def summary(self) -> str:
        seconds = (self.stopped or time.monotonic()) - self.started
        return (
            f"{self.total} requests in {seconds:.0f} s: {self.ok} ok, {self.failed} failed "
            f"{dict(self.errors)}, statuses {dict(self.statuses)}, stale keep-alive retries {self.stale_retries}"
            + ("".join("\n  " + line for line in self.error_log) if self.error_log else "")
        )


# --- playbooks ---------------------------------------------------------------------------


def ansible_playbook() -> str:
    here = Path(sys.executable).parent / "ansible-playbook"
    return str(here) if here.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")


def run_playbook(playbook: str, inventory: Path | str, extra_vars: dict | None = None, *args: str,
                 timeout: float = 1200, log: Path | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """Run a playbook of the repository; output (stdout+stderr) in ``.stdout``, never raises on failure."""
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    command = [ansible_playbook(), "-i", str(inventory), str(REPO / playbook), *args]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    result.duration = time.monotonic() - started
    if log:
        log.write_text(result.stdout)
    return result


RECAP_RE = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def play_recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP of an ansible-playbook run: host -> {ok, changed, unreachable, failed}."""
    return {
        host: {"ok": int(ok), "changed": int(changed), "unreachable": int(unr), "failed": int(failed)}
        for host, ok, changed, unr, failed in RECAP_RE.findall(output.rpartition("PLAY RECAP")[2])
    }


def changed_tasks(output: str) -> list[str]:
    """Names of the tasks that reported changed (for a readable idempotence failure)."""
    names, current = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            current = line[6:].rsplit("]", 1)[0]
        elif line.startswith("changed:") and current and current not in names:
            names.append(current)
    return names


def backup_path(output: str) -> Path:
    """The dump path that playbooks/backup.yml prints."""
    match = re.search(r"Backup:\s+(\S+\.dump)", output)
    if not match:
        raise AssertionError("backup.yml printed no backup path:\n" + output[-3000:])
    return Path(match.group(1))


def copy_app_tree(destination: Path, marker: str, broken: bool = False) -> Path:
    """A copy of app/ that hashes to a new image tag.

    ``marker`` is appended to the base template as a Jinja comment (renders nothing).
    ``broken=True`` makes /readyz fail forever after start, so Swarm's health
    check never passes and the update is rolled back.
    """
    shutil.copytree(
        REPO / "app", destination,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "instance", "tests"),
        symlinks=True,
    )  # fmt: skip
    # A template, not the stylesheet: static files are also baked into the nginx image.
    target = destination / "loginapp" / "templates" / "base.html"
    with target.open("a") as out:
        out.write(f"{{# {marker} #}}\n")
    if broken:
        entry = destination / "docker-entrypoint.sh"
        text = entry.read_text()
        # Serve nothing on 8000: the health check fails, Swarm rolls back.
        text = text.replace('exec "$@"', 'echo "broken build: refusing to start" >&2; sleep 5; exit 1')
        assert "broken build" in text
        entry.write_text(text)
    return destination
