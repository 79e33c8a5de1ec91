"""The swarm as its users see it: membership, roles, addresses, labels.

Cluster-wide facts are read on the first manager. Every test starts from
the whole cluster (``full_strength`` waits, bounded, for it), so it does not
matter whether a fault test ran before.
"""

import json

import pytest
from loginapp_kit.cluster import nodes


def test_all_nodes_ready_and_active(full_strength, node_names):
    listed = nodes(full_strength)
    assert sorted(listed) == sorted(node_names)
    assert {n["status"] for n in listed.values()} == {"Ready"}
    assert {n["availability"] for n in listed.values()} == {"Active"}


def test_managers_and_workers_as_in_the_inventory(full_strength):
    listed = nodes(full_strength)
    managers, workers = full_strength.settings["loginapp_managers"], full_strength.settings["loginapp_workers"]
    assert {name for name, n in listed.items() if n["manager"]} == set(managers)
    assert sorted(listed[name]["manager"] for name in managers) == ["Leader", "Reachable", "Reachable"]
    assert all(listed[name]["manager"] == "" for name in workers)


def test_every_node_advertises_its_network_address(full_strength, node_names):
    managers = full_strength.settings["loginapp_managers"]
    for name in node_names:
        info = json.loads(full_strength.docker("info", "--format", "{{json .Swarm}}", node=name))
        assert info["LocalNodeState"] == "active", name
        # The address on the scenario network, so the others can reach it (not 127.0.0.1 or docker0).
        assert info["NodeAddr"] == full_strength.node_address(name), name
        assert info["ControlAvailable"] is (name in managers), name


def test_managers_listen_for_the_swarm_on_their_advertised_address_only(full_strength):
    # Not on every interface (CIS Docker Benchmark 7.2): the default listen address is the advertised one.
    for name in full_strength.settings["loginapp_managers"]:
        listening = full_strength.run_on(name, "ss", "-Hlnt", "sport = :2377").splitlines()
        assert [line.split()[3] for line in listening] == [f"{full_strength.node_address(name)}:2377"], name


def test_labels_exactly_as_declared(full_strength, node_names, inventory_vars):
    for name in node_names:
        labels = json.loads(full_strength.docker("node", "inspect", "--format", "{{json .Spec.Labels}}", name))
        assert labels == inventory_vars(name).get("swarm_node_labels", {}), name


def test_worker_cannot_manage(full_strength):
    worker = full_strength.settings["loginapp_workers"][0]
    with pytest.raises(RuntimeError, match="not a swarm manager"):
        full_strength.docker("node", "ls", node=worker)
