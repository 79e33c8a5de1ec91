"""Publicly trusted certificates, proven offline: tls_mode=acme against Debian's Pebble.

Pebble (the ACME server) runs on the controller; pebble-challtestsrv is its
DNS and answers the test name with the edge node's address, so the HTTP-01
validation really crosses the network to nginx on port 80. The controller
resolves the name the same way (/etc/hosts), as a client would through public
DNS. The module switches the deployment to acme with `site.yml`, and switches
it back to the self-signed CA when it is done, so the other tests see the
deployment as the scenario made it.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from cryptography import x509
from loginapp_kit.load import LoadGenerator
from loginapp_kit.pebble import Pebble, resolve_on_controller, served_certificate

pytestmark = [pytest.mark.disruptive, pytest.mark.timeout(1500)]

NAME = "acme.loginapp.test"
# Above Pebble's five-year lifetime: every run finds the certificate due.
FORCE_RENEWAL_DAYS = 100000


class AcmeSite:
    """The deployment switched to acme: the Pebble it uses, and how to run and probe it."""

    def __init__(self, target, pebble: Pebble, workdir):
        self.target, self.pebble, self.workdir = target, pebble, workdir

    def run(self, playbook: str, name: str, **extra):
        log = self.workdir / f"{name}.log"
        run = self.target.run_playbook(playbook, log=log, **self.pebble.tls_vars(NAME), **extra)
        print(f"{playbook} ({name}): rc={run.returncode} in {run.duration:.0f} s, recap {run.recap}")
        return run

    def served(self) -> x509.Certificate:
        """The leaf certificate the edge serves for NAME, verified for that name against Pebble's roots."""
        return served_certificate(NAME, self.pebble.roots)

    def record(self) -> dict:
        return json.loads((self.target.state_dir / "tls" / "acme-issued.json").read_text())


@pytest.fixture(scope="module")
def acme_site(target, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("acme")
    edge = target.settings["loginapp_first_manager"]
    pebble = Pebble(target.node_address(edge)).start()
    try:
        with resolve_on_controller(NAME, target.node_address(edge)):
            site = AcmeSite(target, pebble, workdir)
            run = site.run("site.yml", "switch-to-acme")
            assert run.ok, run.tail(80) + pebble.log_tail()
            yield site
    finally:
        pebble.stop()
        # Back to the scenario's self-signed CA, whatever the tests did.
        back = target.run_playbook("site.yml", log=workdir / "switch-back.log")
        assert back.ok, back.tail(80)


def test_the_issued_chain_verifies_against_the_acme_root_for_the_name(acme_site):
    leaf = acme_site.served()
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert names == [NAME]
    assert leaf.issuer != leaf.subject  # not the temporary self-signed one
    record = acme_site.record()
    assert record["status"] == "issued" and record["names"] == [NAME]
    assert str(leaf.serial_number) == record["serial"]
    # Port 80 still redirects everything but the challenge path.
    with socket.create_connection((NAME, 80), timeout=10) as http:
        http.sendall(f"GET /login HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode())
        head = http.recv(4096).decode(errors="replace")
    assert " 301 " in head.split("\r\n")[0] and f"Location: https://{NAME}/login" in head


def test_a_run_with_time_left_orders_nothing(acme_site):
    serial = acme_site.served().serial_number
    run = acme_site.run("playbooks/renew.yml", "renew-not-due")
    assert run.ok, run.tail(60)
    assert run.changed == 0, run.changed_tasks()
    assert acme_site.served().serial_number == serial


def test_forced_renewal_is_served_without_a_failed_request(acme_site):
    before = acme_site.served().serial_number
    nginx = acme_site.target.container("nginx")
    with LoadGenerator(NAME, acme_site.pebble.client_context(), workers=6) as load:
        time.sleep(2)
        started = time.monotonic()
        run = acme_site.run("playbooks/renew.yml", "renew-forced", tls_renew_days=FORCE_RENEWAL_DAYS)
        renewal = time.monotonic() - started
        time.sleep(2)
    print(f"forced renewal: {renewal:.0f} s; {load.summary()}")
    assert run.ok, run.tail(80) + acme_site.pebble.log_tail()
    assert acme_site.served().serial_number != before
    assert str(acme_site.served().serial_number) == acme_site.record()["serial"]
    assert load.failed == 0, load.summary()
    assert load.total > 0
    # Reloaded in place, never restarted.
    assert acme_site.target.container("nginx") == nginx


def test_a_renewal_with_the_ca_down_fails_clearly_and_keeps_serving(acme_site):
    before = acme_site.served().serial_number
    acme_site.pebble.stop_ca()
    try:
        run = acme_site.run("playbooks/renew.yml", "renew-ca-down", tls_renew_days=FORCE_RENEWAL_DAYS)
    finally:
        acme_site.pebble.start()
    assert not run.ok
    assert run.says("issued no certificate") and run.says("days left"), run.tail(40)
    assert acme_site.served().serial_number == before
    assert acme_site.record()["status"] == "issued"
