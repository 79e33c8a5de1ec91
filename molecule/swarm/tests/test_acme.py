"""Publicly trusted certificates, proven offline: tls_mode=acme against Debian's Pebble, on two edges.

Pebble (the ACME server) runs on the controller; pebble-challtestsrv is its
DNS and answers the test name with one edge node's address, so the HTTP-01
validation really crosses the network to that node's nginx on port 80. The
controller resolves the name the same way (/etc/hosts), as a client would
through public DNS. The module switches the cluster to acme with `site.yml`
and back to its self-signed CA when done, so the other tests see the
deployment as the scenario made it.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from cryptography import x509
from loginapp_kit.client import served_certificate
from loginapp_kit.cluster import wait_for_full_strength
from loginapp_kit.load import LoadGenerator
from loginapp_kit.pebble import Pebble, resolve_on_controller
from loginapp_kit.wait import wait_for

pytestmark = [pytest.mark.disruptive, pytest.mark.timeout(1500)]

NAME = "acme.loginapp.test"
# Above Pebble's five-year lifetime: every run finds the certificate due.
FORCE_RENEWAL_DAYS = 100000


class AcmeCluster:
    """The cluster switched to acme: the Pebble it uses, its edges, and how to run and probe it."""

    def __init__(self, target, pebble: Pebble, workdir):
        self.target, self.pebble, self.workdir = target, pebble, workdir

    def run(self, playbook: str, name: str, **extra):
        log = self.workdir / f"{name}.log"
        run = self.target.run_playbook(playbook, log=log, **self.pebble.tls_vars(NAME), **extra)
        print(f"{playbook} ({name}): rc={run.returncode} in {run.duration:.0f} s, recap {run.recap}")
        return run

    def edges(self) -> list[str]:
        """The addresses of the nodes running nginx, once its service has converged."""
        assert wait_for(lambda: self.target.converged("nginx"), 180), "nginx has not converged"
        nodes = sorted({node for _, node, _ in self.target.running_tasks("nginx")})
        assert len(nodes) == 2, f"nginx runs on {nodes}"
        return [self.target.node_address(node) for node in nodes]

    def serials(self) -> dict[str, int]:
        """The serial each edge serves for NAME, each chain verified for NAME against Pebble's roots."""
        return {edge: served_certificate(NAME, self.pebble.roots, edge).serial_number for edge in self.edges()}

    def record(self) -> dict:
        return json.loads((self.target.state_dir / "tls" / "acme-issued.json").read_text())


@pytest.fixture(scope="module")
def acme_cluster(target, tmp_path_factory):
    assert wait_for_full_strength(target), "the cluster is not at full strength"
    workdir = tmp_path_factory.mktemp("acme")
    pebble = Pebble("127.0.0.1").start()
    cluster = AcmeCluster(target, pebble, workdir)
    # Switching modes updates nginx's service (a new mount), and Swarm may place its tasks on other nodes:
    # point the name at an edge that runs nginx now and keeps it (the order goes through it).
    first = cluster.edges()[0]
    pebble.point_dns_at(first)
    try:
        with resolve_on_controller(NAME, first):
            run = cluster.run("site.yml", "switch-to-acme")
            assert run.ok, run.tail(80) + pebble.log_tail()
            yield cluster
    finally:
        pebble.stop()
        back = target.run_playbook("site.yml", log=workdir / "switch-back.log")
        assert back.ok, back.tail(80)


def test_every_edge_serves_the_issued_chain_for_the_name(acme_cluster):
    serials = acme_cluster.serials()
    record = acme_cluster.record()
    assert record["status"] == "issued" and record["names"] == [NAME]
    assert set(serials.values()) == {int(record["serial"])}, serials
    leaf = served_certificate(NAME, acme_cluster.pebble.roots)
    assert leaf.issuer != leaf.subject  # not the temporary self-signed one
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [NAME]
    # Port 80 still redirects everything but the challenge path.
    with socket.create_connection((NAME, 80), timeout=10) as http:
        http.sendall(f"GET /login HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode())
        head = http.recv(4096).decode(errors="replace")
    assert " 301 " in head.split("\r\n")[0] and f"Location: https://{NAME}/login" in head


def test_a_run_with_time_left_orders_nothing(acme_cluster):
    before = acme_cluster.serials()
    run = acme_cluster.run("playbooks/renew.yml", "renew-not-due")
    assert run.ok, run.tail(60)
    assert run.changed == 0, run.changed_tasks()
    assert acme_cluster.serials() == before


def test_renewal_validated_through_the_other_edge_is_served_without_a_failed_request(acme_cluster):
    """The CA now reaches the other edge: every nginx replica answers the challenge, and reloads the chain in place."""
    before = set(acme_cluster.serials().values())
    other = next(edge for edge in acme_cluster.edges() if edge != acme_cluster.pebble.edge_address)
    acme_cluster.pebble.point_dns_at(other)
    with resolve_on_controller(NAME, other), LoadGenerator(NAME, acme_cluster.pebble.client_context()) as load:
        time.sleep(2)
        run = acme_cluster.run("playbooks/renew.yml", "renew-through-other-edge", tls_renew_days=FORCE_RENEWAL_DAYS)
        time.sleep(2)
    print(f"renewal through the other edge: {load.summary()}")
    assert run.ok, run.tail(80) + acme_cluster.pebble.log_tail()
    after = set(acme_cluster.serials().values())
    assert len(after) == 1 and after != before, after
    assert after == {int(acme_cluster.record()["serial"])}
    assert load.failed == 0, load.summary()
    assert load.total > 0


def test_a_renewal_with_the_ca_down_fails_clearly_and_keeps_serving(acme_cluster):
    before = acme_cluster.serials()
    acme_cluster.pebble.stop_ca()
    try:
        run = acme_cluster.run("playbooks/renew.yml", "renew-ca-down", tls_renew_days=FORCE_RENEWAL_DAYS)
    finally:
        acme_cluster.pebble.start()
    assert not run.ok
    assert run.says("issued no certificate") and run.says("days left"), run.tail(40)
    assert acme_cluster.serials() == before
    assert acme_cluster.record()["status"] == "issued"
