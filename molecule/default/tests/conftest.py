"""Shared fixtures for the end-to-end scenario (`molecule/default`).

Two points of view:

* inside the deploy host (a manager), through testinfra: ``manager``, plus
  helpers that read ``docker service inspect`` and run commands in a task's
  container (``service_spec``, ``task_container``);
* the controller, as a user's machine: ``site`` (address, URLs, CA file) and
  ``http_session`` / ``new_http_session`` (a cookie-keeping HTTPS client that
  verifies the certificate against the project's CA and fills in CSRF tokens).

Everything is read from the Molecule inventory, so the fixtures keep working
when the scenario's variables change. Fixtures are session-scoped where the
value cannot change during a run; anything that a test could disturb (a
cookie jar, a user) is function-scoped.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
STACK = "loginapp"


# --- test order ---------------------------------------------------------------------

# Files that only observe the stack run first, in this order; other files follow
# in pytest's usual (alphabetical) order. Tests that break the stack on purpose
# (kill tasks, restart the engine, redeploy) should be marked
# ``@pytest.mark.disruptive``: they run after every unmarked test of every file.
OBSERVING_FIRST = ("test_stack.py", "test_browser.py")


def pytest_configure(config):
    config.addinivalue_line("markers", "disruptive: breaks or redeploys the stack; runs after all other tests")


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = item.path.name
        first = OBSERVING_FIRST.index(name) if name in OBSERVING_FIRST else len(OBSERVING_FIRST)
        return (item.get_closest_marker("disruptive") is not None, first)

    items.sort(key=rank)  # stable: keeps each file's own order


# --- inside the deploy host ----------------------------------------------------------


def wait_for(predicate, timeout: float, interval: float = 2.0):
    """Poll ``predicate`` until it returns something truthy or ``timeout`` s pass.

    Returns the last value (falsy on timeout), so callers assert on it and the
    failure message shows what was last seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="session")
def inventory_vars():
    """Inventory variables of the deploy host (as Molecule wrote them, untemplated)."""
    runner = AnsibleRunner(INVENTORY)
    return runner.get_variables(runner.get_hosts("managers")[0])


@pytest.fixture(scope="session")
def manager():
    """testinfra host of the first manager: where the stack is deployed and inspected."""
    name = AnsibleRunner(INVENTORY).get_hosts("managers")[0]
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=INVENTORY)


@pytest.fixture(scope="session")
def service_spec(manager):
    """``service_spec("app")`` -> the ``Spec`` of ``loginapp_app`` from ``docker service inspect``."""

    def spec(service: str) -> dict:
        out = manager.check_output(f"docker service inspect {STACK}_{service}")
        return json.loads(out)[0]["Spec"]

    return spec


@pytest.fixture(scope="session")
def task_container(manager):
    """``task_container("app")`` -> ID of one running container of ``loginapp_app`` on the manager."""

    def container(service: str) -> str:
        ids = manager.check_output(
            f"docker ps -q --filter status=running --filter label=com.docker.swarm.service.name={STACK}_{service}"
        ).split()
        assert ids, f"no running container of {STACK}_{service} on the manager"
        return ids[0]

    return container


def service_converged(manager, service: str) -> bool:
    """True when the service runs all its replicas and no update is in progress."""
    replicas = manager.check_output(f"docker service ls --filter name={STACK}_{service} --format '{{{{.Replicas}}}}'")
    state = manager.check_output(
        f"docker service inspect {STACK}_{service} "
        "--format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}'"
    )
    running, _, desired = replicas.partition(" ")[0].partition("/")
    return running == desired and running != "0" and state in ("", "completed")


# --- the controller's point of view ----------------------------------------------------


@dataclass(frozen=True)
class Site:
    """Where the deployed site is, as the controller reaches it."""

    host: str  # the deploy host's address (its default IPv4, what the smoke test uses)
    ca_cert: Path  # the CA that signed the server certificate (tls role output)
    secrets_dir: Path  # the stack role's generated secrets on the controller
    controller_ip: str  # the controller's source address towards the host

    @property
    def http_url(self) -> str:
        return f"http://{self.host}"

    @property
    def https_url(self) -> str:
        return f"https://{self.host}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the project's CA only."""
        return ssl.create_default_context(cafile=str(self.ca_cert))


@pytest.fixture(scope="session")
def site(manager, inventory_vars):
    # The host's default-route source address is ansible_default_ipv4.address.
    route = manager.check_output("ip -4 -o route get 1.1.1.1")
    host = re.search(r"\bsrc (\S+)", route).group(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 443))  # no packet is sent; this only picks the route
        controller_ip = probe.getsockname()[0]
    ca_cert = Path(inventory_vars["tls_dir"]) / "ca.crt"
    assert ca_cert.is_file(), f"{ca_cert} missing: did converge run?"
    return Site(
        host=host,
        ca_cert=ca_cert,
        secrets_dir=Path(inventory_vars["stack_secrets_dir"]),
        controller_ip=controller_ip,
    )


class _Forms(HTMLParser):
    """Collects each <form>'s action and its inputs' default values."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action"), "fields": {}})
        elif tag == "input" and self.forms and attrs.get("name"):
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value") or ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@dataclass
class Response:
    status: int
    url: str  # the URL that answered (after redirects, if followed)
    headers: object  # email.message.Message: case-insensitive .get()
    text: str


class HttpSession:
    """A browser-like HTTPS client: cookie jar, CA verification, CSRF tokens, Referer.

    Redirects are followed unless ``follow=False``. HTTP errors are returned as
    responses (never raised), so tests assert on status codes.
    """

    def __init__(self, site: Site):
        self.site = site
        self.cookies = http.cookiejar.CookieJar()
        context = site.ssl_context()
        self._follow = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies),
            urllib.request.HTTPSHandler(context=context),
        )
        self._nofollow = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies),
            urllib.request.HTTPSHandler(context=context),
            _NoRedirect,
        )

    def url(self, path: str) -> str:
        return path if "://" in path else self.site.https_url + path

    def request(self, method, path, data=None, follow=True, referer=None) -> Response:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.url(path), data=body, method=method)
        # Flask-WTF checks a same-origin Referer on HTTPS POSTs, like a browser sends.
        req.add_header("Referer", referer or self.url(path))
        opener = self._follow if follow else self._nofollow
        try:
            with opener.open(req, timeout=30) as resp:
                return Response(resp.status, resp.url, resp.headers, resp.read().decode())
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, err.url, err.headers, err.read().decode())

    def get(self, path, **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def submit(self, path, fields: dict, form_index: int = -1, referer=None, **kwargs) -> Response:
        """GET ``path``, take the form's hidden fields (CSRF token), POST them with ``fields``.

        The form is the page's last one by default (the header's logout form
        comes first); ``referer`` overrides the page's own URL.
        """
        page = self.get(path)
        parser = _Forms()
        parser.feed(page.text)
        assert parser.forms, f"no form on {path} (status {page.status})"
        form = parser.forms[form_index]
        data = {**form["fields"], **fields}
        action = urllib.parse.urljoin(page.url, form["action"] or page.url)
        return self.request("POST", action, data=data, referer=referer or page.url, **kwargs)

    def post_form_on(self, page: Response, action: str, fields: dict | None = None) -> Response:
        """POST the form of ``page`` whose action is ``action`` (e.g. the logout button)."""
        parser = _Forms()
        parser.feed(page.text)
        forms = [f for f in parser.forms if f["action"] == action]
        assert forms, f"no form posting to {action} on {page.url}"
        data = {**forms[0]["fields"], **(fields or {})}
        return self.request("POST", action, data=data, referer=page.url)

    # The app's own flows, as a user clicks through them.
    def register(self, username: str, password: str) -> Response:
        return self.submit(
            "/register",
            {"username": username, "password": password, "confirm": password},
        )

    def login(self, username: str, password: str) -> Response:
        return self.submit("/login", {"username": username, "password": password})


@pytest.fixture
def new_http_session(site):
    """Factory of independent HTTPS clients (separate cookie jars: separate "browsers")."""
    return lambda: HttpSession(site)


@pytest.fixture
def http_session(new_http_session):
    """One fresh HTTPS client for the test."""
    return new_http_session()


@pytest.fixture
def credentials():
    """A username nobody registered yet and a password the app's policy accepts."""
    return f"user-{secrets.token_hex(4)}", f"Pass-{secrets.token_urlsafe(12)}"
