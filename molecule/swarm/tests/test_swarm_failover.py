"""Losing the leader: the other managers elect a new one, and the old leader
rejoins as a reachable manager once its engine is back. The test waits until
the cluster is whole again before it ends."""

import pytest
from loginapp_kit.cluster import nodes, start_engine, stop_engine, wait_for_full_strength
from loginapp_kit.wait import wait_for

ELECTION_TIMEOUT = 60
REJOIN_TIMEOUT = 180

pytestmark = pytest.mark.disruptive


def test_leader_failover_and_rejoin(full_strength):
    target = full_strength
    leader = next(name for name, n in nodes(target).items() if n["manager"] == "Leader")
    witness = next(name for name in target.settings["loginapp_managers"] if name != leader)

    stop_engine(target, leader)
    try:
        new_leader = wait_for(
            lambda: next(
                (name for name, n in nodes(target, via=witness).items() if n["manager"] == "Leader" and name != leader),
                None,
            ),
            ELECTION_TIMEOUT,
            errors=(RuntimeError,),
        )
        assert new_leader, f"no new leader within {ELECTION_TIMEOUT}s"
        assert nodes(target, via=witness)[leader]["manager"] == "Unreachable"
    finally:
        start_engine(target, leader)

    # Statuses read "Unknown" for a while after a leader change; wait for the whole cluster to report in.
    assert wait_for_full_strength(target, REJOIN_TIMEOUT, via=witness), nodes(target, via=witness)
    assert nodes(target, via=witness)[leader]["manager"] == "Reachable"
