"""The loginapp stack spread over the swarm, as a user and an operator see it.

Placement and images are read on swarm-m1 (a manager); HTTP goes from the
controller (where pytest runs) to each node's address on the scenario
network, verified against the CA that the tls stage wrote into tls_dir.

Runs first (pytest collects files in name order); the node-loss and leader
failover tests come later because they stop engines.
"""

import ipaddress
import os
import re
import time
import uuid

import pytest
import requests
import testinfra
from cryptography import x509

NODES = ["swarm-m1", "swarm-m2", "swarm-m3", "swarm-w1"]
STACK = "loginapp"
APP_REPLICAS = 3
NGINX_REPLICAS = 2
DB_NODE = "swarm-m1"  # the node labelled loginapp.db=true in molecule.yml
# Enough requests that all of them landing on one node's app tasks is
# practically impossible (nginx picks a random address of the dnsrr answer).
SPREAD_REQUESTS = 30

testinfra_hosts = ["ansible://swarm-m1"]


def get_host(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def node_address(name):
    """The node's address on the scenario network (what the controller reaches)."""
    out = get_host(name).check_output("ip -4 -o addr show eth0")
    return out.split()[3].split("/")[0]


def tls_file(name):
    return os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "state", "tls", name)


def running_tasks(manager, service):
    """[(task name, node)] of the service's tasks that are running now."""
    out = manager.check_output(
        f"docker service ps {STACK}_{service} --filter desired-state=running "
        "--format '{{.Name}}|{{.Node}}|{{.CurrentState}}'"
    )
    tasks = []
    for line in out.splitlines():
        name, node, state = line.split("|")
        if state.startswith("Running"):
            tasks.append((name, node))
    return tasks


def edge_nodes(manager):
    return sorted(node for _, node in running_tasks(manager, "nginx"))


def url(name, path):
    return f"https://{node_address(name)}{path}"


def get(name, path, **kwargs):
    kwargs.setdefault("timeout", 20)
    return requests.get(url(name, path), verify=tls_file("ca.crt"), **kwargs)


def csrf_token(html):
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def post_form(session, name, path, fields):
    """Submit a form the way a browser does: token from the page, same-origin Referer."""
    page = session.get(url(name, path), verify=tls_file("ca.crt"), timeout=20)
    assert page.status_code == 200, page.text[:500]
    return session.post(
        url(name, path),
        data={"csrf_token": csrf_token(page.text), **fields},
        headers={"Referer": url(name, path)},
        verify=tls_file("ca.crt"),
        allow_redirects=False,
        timeout=30,
    )


def answering_nodes(marker, expected, timeout=30):
    """Nodes whose running app containers logged a request carrying `marker` as User-Agent.

    Gunicorn's access log ends with the User-Agent nginx passed through. Each
    node's own engine is asked (`docker logs` of its app containers):
    `docker service logs` can hang for good when a failed task's node does
    not deliver its logs. Poll until all `expected` lines are in.
    """
    deadline = time.monotonic() + timeout
    while True:
        nodes = []
        for name in NODES:
            node = get_host(name)
            ids = node.check_output(
                f"docker ps -q --filter label=com.docker.swarm.service.name={STACK}_app --filter status=running"
            ).split()
            for container in ids:
                logs = node.run(f"timeout 20 docker logs --since 10m {container} 2>&1").stdout
                nodes += [name for line in logs.splitlines() if marker in line]
        if len(nodes) >= expected or time.monotonic() > deadline:
            return nodes
        time.sleep(2)


@pytest.fixture(scope="module")
def m1(host):
    return host


@pytest.fixture(scope="module")
def edges(m1):
    listed = edge_nodes(m1)
    assert len(listed) == NGINX_REPLICAS, f"nginx runs on {listed}"
    return listed


def test_app_replicas_spread_over_nodes(m1):
    nodes = [node for _, node in running_tasks(m1, "app")]
    assert len(nodes) == APP_REPLICAS, nodes
    assert len(set(nodes)) >= 2, f"all app replicas on {nodes}"


def test_db_runs_on_the_labelled_node(m1):
    assert [node for _, node in running_tasks(m1, "db")] == [DB_NODE]


def test_nginx_runs_on_distinct_nodes(edges):
    assert len(set(edges)) == NGINX_REPLICAS


@pytest.mark.parametrize("name", NODES)
def test_every_node_has_the_deployed_images(m1, name):
    # The images the services actually run, not what the role thinks it built.
    refs = [
        m1.check_output(
            f"docker service inspect --format '{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' {STACK}_{svc}"
        )
        for svc in ("app", "nginx", "db")
    ]
    node = get_host(name)
    for ref in refs:
        assert node.run(f"docker image inspect {ref}").rc == 0, f"{ref} missing on {name}"


def test_certificate_names_every_node():
    with open(tls_file("server.crt"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = set(sans.get_values_for_type(x509.IPAddress))
    for name in NODES:
        assert ipaddress.ip_address(node_address(name)) in ips, f"{name} not in {ips}"


def test_every_edge_serves_https(edges):
    for name in edges:
        login = get(name, "/login")
        assert login.status_code == 200
        assert "csrf_token" in login.text
        assert "Strict-Transport-Security" in login.headers
        ready = get(name, "/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "database": "up"}


def test_every_edge_reaches_app_tasks_on_other_nodes(m1, edges):
    """nginx on each edge spreads requests over app tasks on several nodes.

    Each edge gets SPREAD_REQUESTS requests with a User-Agent unique to this
    run and edge; the app's access log, read on each node from its running
    app containers, tells which nodes answered. At least
    two nodes, at least one not the edge itself: traffic crossed the overlay.
    """
    for name in edges:
        marker = f"molecule-spread-{name}-{uuid.uuid4().hex[:8]}"
        for _ in range(SPREAD_REQUESTS):
            assert get(name, "/healthz", headers={"User-Agent": marker}).status_code == 200
        answered = answering_nodes(marker, SPREAD_REQUESTS)
        assert len(answered) == SPREAD_REQUESTS, f"{len(answered)} log lines for {marker}"
        assert len(set(answered)) >= 2, f"via {name}, only {set(answered)} answered"
        assert set(answered) - {name}, f"via {name}, no app task on another node answered"


def test_register_on_one_edge_log_in_on_the_other(edges):
    first, second = edges
    username = f"swarm-{uuid.uuid4().hex[:10]}"
    password = f"correct horse {uuid.uuid4().hex}"

    with requests.Session() as browser:
        created = post_form(
            browser,
            first,
            "/register",
            {"username": username, "password": password, "confirm": password},
        )
        assert created.status_code == 302, created.text[:500]
        assert created.headers["Location"].endswith("/login")
        logged_in = post_form(browser, first, "/login", {"username": username, "password": password})
        assert logged_in.status_code == 302, logged_in.text[:500]
        dashboard = browser.get(url(first, "/"), verify=tls_file("ca.crt"), timeout=20)
        assert dashboard.status_code == 200
        assert f"Hello, {username}" in dashboard.text
        assert "This is your first login." in dashboard.text

    # Another browser, through the other edge: the user and the first login
    # are in the one database every app task shares.
    with requests.Session() as browser:
        logged_in = post_form(browser, second, "/login", {"username": username, "password": password})
        assert logged_in.status_code == 302, logged_in.text[:500]
        dashboard = browser.get(url(second, "/"), verify=tls_file("ca.crt"), timeout=20)
        assert dashboard.status_code == 200
        assert f"Hello, {username}" in dashboard.text
        assert "This is your first login." not in dashboard.text
