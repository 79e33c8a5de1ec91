"""The firewall role on the swarm's nodes: Swarm's ports answer cluster members and nobody else on the same
network. The controller, where pytest runs, is such a stranger: it sits on the scenario network beside the nodes
but is no member. HTTPS to the edges still works from it (see test_cluster_stack)."""

import socket

import pytest

SWARM_TCP_PORTS = [2377, 7946]


def tcp_answers(host: str, port: int, timeout: float = 3) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def manager_address(target):
    return target.node_address(target.settings["loginapp_first_manager"])


@pytest.mark.parametrize("port", SWARM_TCP_PORTS)
def test_a_stranger_on_the_network_cannot_reach_swarm_ports(manager_address, port):
    assert not tcp_answers(manager_address, port), f"{manager_address}:{port} answered a non-member"


@pytest.mark.parametrize("port", SWARM_TCP_PORTS)
def test_members_still_reach_swarm_ports(target, manager_address, port):
    worker = target.settings["loginapp_workers"][0]
    probe = f"exec 3<>/dev/tcp/{manager_address}/{port}"
    target.run_on(worker, "timeout", "5", "bash", "-c", probe)  # raises when it fails


def test_members_are_in_the_cluster_set_and_strangers_are_not(target, node_names, manager_address):
    """The UDP ports (7946, 4789) and ESP are admitted by the same set: every node's address, and nothing else."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((manager_address, 9))  # no packet is sent: the controller's own address on that network
        stranger = probe.getsockname()[0]
    manager = target.settings["loginapp_first_manager"]

    def in_cluster_set(address):
        element = f"{{ {address} }}"
        try:  # nft answers with the interval that holds the address (members' addresses are merged), or fails
            target.run_on(manager, "nft", "get", "element", "inet", "loginapp", "cluster_v4", element)
        except RuntimeError:
            return False
        return True

    assert all(in_cluster_set(target.node_address(node)) for node in node_names)
    assert not in_cluster_set(stranger)
    assert "policy drop" in target.run_on(manager, "nft", "list", "chain", "inet", "loginapp", "input")
    assert target.run_on(manager, "systemctl", "is-enabled", "loginapp-firewall") == "enabled"
