"""Fixtures of the swarm scenario, on top of the kit's (``target``: the first manager's view)."""

import pytest
from loginapp_kit.cluster import wait_for_full_strength
from testinfra.utils.ansible_runner import AnsibleRunner


@pytest.fixture(scope="session")
def node_names(target):
    """Every node of the scenario, managers first."""
    return target.settings["loginapp_managers"] + target.settings["loginapp_workers"]


@pytest.fixture(scope="session")
def inventory_vars(target):
    """``inventory_vars(node)``: the node's variables as the scenario's inventory declares them."""
    runner = AnsibleRunner(str(target.inventory))
    return lambda node: runner.get_variables(node)


@pytest.fixture
def full_strength(target):
    """Observations start from the whole cluster: waits (bounded) until every node is back after any fault."""
    assert wait_for_full_strength(target), "the cluster did not come back to full strength"
    return target
