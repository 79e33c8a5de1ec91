"""The swarm as its users see it: membership, roles, addresses, labels.

Cluster-wide facts are read on swarm-m1. The failover test, which moves
leadership away from swarm-m1, lives in test_swarm_failover.py so that it
runs after this file.
"""

import json
import os
import time

import pytest
import testinfra

MANAGERS = ["swarm-m1", "swarm-m2", "swarm-m3"]
WORKERS = ["swarm-w1"]
DECLARED_LABELS = {
    "swarm-m1": {"loginapp.db": "true"},
    "swarm-m2": {},
    "swarm-m3": {},
    "swarm-w1": {"role": "worker-test"},
}

# Every test here is cluster-wide: run it once, from swarm-m1's point of view.
testinfra_hosts = ["ansible://swarm-m1"]


def get_host(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def nodes(host):
    """Hostname -> {'status', 'availability', 'manager'} as `docker node ls` reports it."""
    out = host.check_output("docker node ls --format '{{.Hostname}}|{{.Status}}|{{.Availability}}|{{.ManagerStatus}}'")
    result = {}
    for line in out.splitlines():
        name, status, availability, manager = line.split("|")
        result[name] = {
            "status": status,
            "availability": availability,
            "manager": manager,
        }
    return result


def wait_for(predicate, timeout, interval=2):
    """Poll predicate until truthy or timeout; errors (no leader yet) count as falsy."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except AssertionError:  # check_output on a manager without quorum
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="module")
def m1(host):
    return host


def test_all_nodes_ready_and_active(m1):
    listed = nodes(m1)
    assert sorted(listed) == sorted(MANAGERS + WORKERS)
    assert {n["status"] for n in listed.values()} == {"Ready"}
    assert {n["availability"] for n in listed.values()} == {"Active"}


def test_three_managers_one_worker(m1):
    listed = nodes(m1)
    assert {name for name, n in listed.items() if n["manager"]} == set(MANAGERS)
    assert {listed[name]["manager"] for name in MANAGERS} <= {"Leader", "Reachable"}
    assert listed["swarm-w1"]["manager"] == ""


def test_first_manager_initialised_and_leads(m1):
    assert nodes(m1)["swarm-m1"]["manager"] == "Leader"


@pytest.mark.parametrize("name", MANAGERS + WORKERS)
def test_every_node_advertises_its_network_address(name):
    node = get_host(name)
    info = json.loads(node.check_output("docker info --format '{{json .Swarm}}'"))
    assert info["LocalNodeState"] == "active"
    # The advertised address is the host's address on the scenario network,
    # so the others can reach it (not 127.0.0.1 or the inner docker0).
    addr = node.check_output("ip -4 -o addr show eth0").split()[3].split("/")[0]
    assert info["NodeAddr"] == addr
    assert info["ControlAvailable"] is (name in MANAGERS)


@pytest.mark.parametrize("name", MANAGERS + WORKERS)
def test_labels_exactly_as_declared(m1, name):
    labels = json.loads(m1.check_output(f"docker node inspect --format '{{{{json .Spec.Labels}}}}' {name}"))
    assert labels == DECLARED_LABELS[name]


def test_worker_cannot_manage(m1):
    worker = get_host("swarm-w1")
    result = worker.run("docker node ls")
    assert result.rc != 0
    assert "not a swarm manager" in result.stderr
