"""The loginapp stack spread over the swarm, as a user and an operator see it.

Placement and images are read on the first manager; HTTPS goes from the
controller (where pytest runs) to each edge node's address on the scenario
network, verified against the CA the tls stage published.
"""

import ipaddress
import json
import uuid

import pytest
from cryptography import x509
from loginapp_kit.wait import wait_for

# Enough requests that all of them landing on one node's app tasks is
# practically impossible (nginx picks a random address of the dnsrr answer).
SPREAD_REQUESTS = 30


def placed(target, service):
    """Nodes running the service's tasks now, one entry per task."""
    return [node for _, node, _ in target.running_tasks(service)]


def desired(target, service):
    return target.service_spec(service)["Mode"]["Replicated"]["Replicas"]


@pytest.fixture
def edges(full_strength):
    """Nodes running nginx, once the stack has converged again after any fault."""
    assert wait_for(lambda: all(full_strength.converged(s) for s in ("nginx", "app", "db")), 180), "stack not converged"
    listed = sorted(placed(full_strength, "nginx"))
    assert len(listed) == desired(full_strength, "nginx") == 2, f"nginx runs on {listed}"
    return listed


def test_app_replicas_spread_over_nodes(full_strength, edges):
    nodes = placed(full_strength, "app")
    assert len(nodes) == desired(full_strength, "app") == 3, nodes
    assert len(set(nodes)) >= 2, f"all app replicas on {nodes}"


def test_db_runs_on_the_labelled_node(full_strength, edges):
    assert placed(full_strength, "db") == full_strength.settings["loginapp_db_hosts"]


def test_nginx_runs_on_distinct_nodes(edges):
    assert len(set(edges)) == len(edges)


def test_every_node_has_the_deployed_images(full_strength, node_names):
    # The images the services actually run, not what the role thinks it built.
    refs = [full_strength.service_image(service) for service in ("app", "nginx", "db")]
    for name in node_names:
        for ref in refs:
            image_id = full_strength.docker("image", "inspect", "--format", "{{.Id}}", ref, node=name, check=False)
            assert image_id.startswith("sha256:"), f"{ref} missing on {name}"


def test_certificate_names_every_node(full_strength, node_names):
    with open(full_strength.outputs("tls")["tls_server_cert_path"], "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = set(sans.get_values_for_type(x509.IPAddress))
    for name in node_names:
        assert ipaddress.ip_address(full_strength.node_address(name)) in ips, f"{name} not in {ips}"


def test_every_edge_serves_https(full_strength, edges):
    for name in edges:
        client = full_strength.client(full_strength.node_address(name))
        login = client.get("/login")
        assert login.status == 200
        assert 'name="csrf_token"' in login.text
        assert login.headers.get("Strict-Transport-Security") == "max-age=63072000"
        assert client.get("/healthz").status == 200
        assert client.get("/readyz").status == 404, "readiness is for the app's health check, not the internet"


def answering_nodes(target, edge, marker, expected, timeout=30):
    """Nodes whose app replicas answered the requests that carried ``marker`` as User-Agent through ``edge``.

    The edge's nginx logs each request as JSON with the replica it went to
    (``upstream_addr``, the last one if it retried); the app's tasks tell which
    node each replica address is on. Polls until all ``expected`` lines are in.
    """
    replicas = target.app_replicas()
    nginx = target.container("nginx", node=edge)
    found: list[str] = []

    def complete():
        logs = target.run_on(edge, "sh", "-c", f"timeout 20 docker logs --since 10m {nginx} 2>/dev/null")
        requests = [json.loads(line) for line in logs.splitlines() if line.startswith("{") and marker in line]
        found[:] = [replicas.get(r["upstream_addr"].split(", ")[-1], f"? {r['upstream_addr']}") for r in requests]
        return len(found) >= expected

    wait_for(complete, timeout)
    return found


def test_every_edge_reaches_app_tasks_on_other_nodes(full_strength, edges, node_names):
    """nginx on each edge spreads requests over app tasks on several nodes, across the overlay.

    Each edge gets SPREAD_REQUESTS requests with a User-Agent unique to this
    run and edge; the edge's access log tells which replicas, so which nodes,
    answered: at least two, at least one not the edge itself.
    """
    for name in edges:
        marker = f"molecule-spread-{name}-{uuid.uuid4().hex[:8]}"
        client = full_strength.client(full_strength.node_address(name))
        for _ in range(SPREAD_REQUESTS):
            assert client.get("/healthz", headers={"User-Agent": marker}).status == 200
        answered = answering_nodes(full_strength, name, marker, SPREAD_REQUESTS)
        assert len(answered) == SPREAD_REQUESTS, f"{len(answered)} log lines for {marker}"
        assert set(answered) <= set(node_names), f"replicas not among the app's running tasks: {answered}"
        assert len(set(answered)) >= 2, f"via {name}, only {set(answered)} answered"
        assert set(answered) - {name}, f"via {name}, no app task on another node answered"


def test_register_on_one_edge_log_in_on_the_other(full_strength, edges):
    first, second = (full_strength.node_address(name) for name in edges)
    username = f"swarm-{uuid.uuid4().hex[:10]}"
    password = f"correct horse {uuid.uuid4().hex}"

    browser = full_strength.client(first)
    created = browser.register(username, password, follow=False)
    assert created.status == 302, created.text[:500]
    assert created.headers["Location"].endswith("/login")
    dashboard = browser.login(username, password)
    assert dashboard.status == 200
    assert f"Hello, {username}" in dashboard.text
    assert "This is your first login." in dashboard.text

    # Another browser, through the other edge: the user and the first login
    # are in the one database every app task shares.
    dashboard = full_strength.client(second).login(username, password)
    assert dashboard.status == 200
    assert f"Hello, {username}" in dashboard.text
    assert "This is your first login." not in dashboard.text
