"""Losing the leader: the two other managers elect a new one, and the old
leader rejoins as a reachable manager once its engine is back.

Runs after test_swarm.py (pytest collects files in name order): it leaves
swarm-m2 or swarm-m3 as the leader.
"""

from test_swarm import get_host, nodes, wait_for

ELECTION_TIMEOUT = 60
REJOIN_TIMEOUT = 90

testinfra_hosts = ["ansible://swarm-m1"]


def full_strength(listed):
    return {n["status"] for n in listed.values()} == {"Ready"} and sorted(
        n["manager"] for n in listed.values() if n["manager"]
    ) == ["Leader", "Reachable", "Reachable"]


def test_leader_failover_and_rejoin(host):
    m1, m2 = host, get_host("swarm-m2")
    assert nodes(m1)["swarm-m1"]["manager"] == "Leader"

    m1.run_expect([0], "systemctl stop docker.socket docker.service")
    try:
        new_leader = wait_for(
            lambda: next(
                (name for name, n in nodes(m2).items() if n["manager"] == "Leader" and name != "swarm-m1"),
                None,
            ),
            ELECTION_TIMEOUT,
        )
        assert new_leader in ("swarm-m2", "swarm-m3"), f"no new leader within {ELECTION_TIMEOUT}s"
        assert nodes(m2)["swarm-m1"]["manager"] == "Unreachable"
    finally:
        m1.run_expect([0], "systemctl start docker.socket docker.service")

    # Statuses read "Unknown" for a while after a leader change; wait for the
    # whole cluster, not just swarm-m1, to report in.
    assert wait_for(lambda: full_strength(nodes(m2)), REJOIN_TIMEOUT), (
        f"not back to 4 Ready nodes and 3 managers within {REJOIN_TIMEOUT}s: {nodes(m2)}"
    )
    assert nodes(m2)["swarm-m1"]["manager"] == "Reachable"
