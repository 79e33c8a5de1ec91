"""A worker that left the swarm joins again on the next run of playbooks/cluster.yml, labels and all,
and the join tokens that run handles never reach its output, even at -vvv (they let anyone who
reaches port 2377 join the swarm). The test ends with the cluster whole again."""

import json

import pytest
from loginapp_kit.cluster import nodes, wait_for_full_strength

pytestmark = pytest.mark.disruptive


def test_a_worker_that_left_rejoins_and_no_join_token_is_printed(full_strength, inventory_vars):
    target = full_strength
    worker = target.settings["loginapp_workers"][0]
    target.run_on(worker, "docker", "swarm", "leave")
    target.docker("node", "rm", "--force", worker)
    assert worker not in nodes(target)

    run = target.run_playbook("playbooks/cluster.yml", "-vvv")
    assert run.ok, run.tail()
    assert run.says("Join as a worker"), run.tail()
    assert "SWMTKN-" not in run.output, "a join token was printed"

    assert wait_for_full_strength(target), nodes(target)
    labels = json.loads(target.docker("node", "inspect", worker, "--format", "{{json .Spec.Labels}}"))
    assert labels == inventory_vars(worker)["swarm_node_labels"]
