"""ACME HTTP-01 on a cluster with two edges: the validation is answered whichever edge the CA reaches.

Pebble runs on the controller; its DNS (pebble-challtestsrv) answers the test
name with one edge's address, then with the other's. Each order can only be
validated through the edge DNS names at that moment, so both succeeding proves
that every nginx replica serves the challenge. The renewal through the second
edge runs under load, and every edge then serves the new certificate. The
cluster goes back to its self-signed CA afterwards.
"""

from __future__ import annotations

import json
import time

import pytest
from loginapp_kit.cluster import wait_for_full_strength
from loginapp_kit.load import LoadGenerator
from loginapp_kit.pebble import Pebble, resolve_on_controller, served_certificate
from loginapp_kit.wait import wait_for

pytestmark = [pytest.mark.disruptive, pytest.mark.timeout(1500)]

NAME = "acme.loginapp.test"
# Above Pebble's five-year lifetime: the run finds the certificate due.
FORCE_RENEWAL_DAYS = 100000


def test_the_challenge_is_answered_whichever_edge_the_ca_reaches(target, tmp_path):
    assert wait_for_full_strength(target), "the cluster is not at full strength"
    first = target.node_address(edges(target)[0])
    pebble = Pebble(first).start()

    def run(playbook, name, **extra):
        result = target.run_playbook(playbook, log=tmp_path / f"{name}.log", **pebble.tls_vars(NAME), **extra)
        print(f"{playbook} ({name}): rc={result.returncode} in {result.duration:.0f} s, recap {result.recap}")
        return result

    def serials():
        """The serial each edge serves for NAME, verified against Pebble's roots."""
        return {address: served_certificate(NAME, pebble.roots, address).serial_number for address in addresses}

    try:
        with resolve_on_controller(NAME, first):
            ordered = run("site.yml", "order-through-first-edge")
            assert ordered.ok, ordered.tail(80) + pebble.log_tail()
        # Switching modes updates nginx's service (a new mount), and Swarm may place it elsewhere: the order
        # went through `first`, so it still runs there; `second` is the other edge now.
        addresses = [target.node_address(edge) for edge in edges(target)]
        assert first in addresses, f"the order succeeded through {first}, which runs no nginx: {addresses}"
        (second,) = set(addresses) - {first}
        issued = set(serials().values())
        record = json.loads((target.state_dir / "tls" / "acme-issued.json").read_text())
        assert issued == {int(record["serial"])}

        pebble.point_dns_at(second)
        with resolve_on_controller(NAME, second), LoadGenerator(NAME, pebble.client_context(), workers=4) as load:
            time.sleep(2)
            renewed = run("playbooks/renew.yml", "renew-through-second-edge", tls_renew_days=FORCE_RENEWAL_DAYS)
            time.sleep(2)
        print(f"renewal through the second edge: {load.summary()}")
        assert renewed.ok, renewed.tail(80) + pebble.log_tail()
        now_served = set(serials().values())
        assert len(now_served) == 1 and now_served != issued, f"edges serve {serials()}"
        assert load.failed == 0, load.summary()
    finally:
        pebble.stop()
        back = target.run_playbook("site.yml", log=tmp_path / "switch-back.log")
        assert back.ok, back.tail(80)


def edges(target) -> list[str]:
    """The nodes running nginx, once its service has converged."""
    assert wait_for(lambda: target.converged("nginx"), 180), "nginx has not converged"
    names = sorted({node for _, node, _ in target.running_tasks("nginx")})
    assert len(names) == 2, f"nginx runs on {names}"
    return names
