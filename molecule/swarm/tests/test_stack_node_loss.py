"""Losing a node that runs app replicas, under steady traffic (the kit's cluster.lose_node).

The victim is a worker when one runs an app replica, else a manager that
does and holds neither the database nor the lead. Traffic goes through an
edge on another node. Swarm marks the victim Down after missing heartbeats
and reschedules its app tasks; meanwhile nginx may still try the dead tasks'
addresses until its resolver cache (valid=10s) and Docker's DNS catch up, but
`proxy_next_upstream` retries idempotent requests on another task, so only
the odd in-flight request may fail. The victim is restarted and the test
waits until the cluster is whole again.
"""

import json

import pytest
from loginapp_kit.cluster import lose_node, pick_victim, wait_for_full_strength

# Requests in flight to a task on the lost node can fail before nginx gives up
# on it (3 tries within 10 s). Allow 5%: none failed in practice (0/340,
# 0/359), but a 5 s connect timeout to a vanished address is plausible under
# load; an outage of the app would fail far more.
MIN_SUCCESS_RATIO = 0.95

pytestmark = [pytest.mark.disruptive, pytest.mark.timeout(900)]


def test_app_survives_losing_a_node(full_strength):
    target = full_strength
    victim = pick_victim(target)
    edge = next((node for _, node, _ in target.running_tasks("nginx") if node != victim), None)
    assert edge, f"nginx only on the victim {victim}"

    loss = lose_node(target, victim, edge)
    print("\nnode loss:", json.dumps(loss.__dict__, indent=2))

    assert loss.seconds_to_node_down is not None, f"{victim} never marked Down"
    assert loss.seconds_to_full_replicas is not None, f"app not back to full replicas without {victim}"
    assert loss.seconds_to_ready_again is not None, f"{victim} not Ready again after its engine restarted"
    assert loss.requests >= 100, f"only {loss.requests} requests sent"
    assert (loss.requests - loss.errors) / loss.requests >= MIN_SUCCESS_RATIO, loss.error_samples
    assert wait_for_full_strength(target)
