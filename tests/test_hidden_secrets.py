"""Tasks whose results carry the swarm's join tokens hide them (`no_log`), so `-v` never prints them.

docker_swarm returns the tokens when it initialises or inspects a swarm (not
when a node joins: its `join_token` argument is already hidden), and
docker_swarm_info always does.
"""

import pytest
import yaml
from loginapp_kit import REPO

TASK_FILES = sorted([*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("playbooks/*.yml"), *REPO.glob("molecule/*/*.yml")])


def tasks(items):
    """Every task in a task list or play list, blocks and handlers included."""
    for item in items or []:
        if not isinstance(item, dict):
            continue
        yield item
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            yield from tasks(item.get(key))


def returns_join_tokens(task) -> bool:
    if "community.docker.docker_swarm_info" in task:
        return True
    swarm = task.get("community.docker.docker_swarm")
    return isinstance(swarm, dict) and swarm.get("state", "present") not in ("join", "absent")


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda path: str(path.relative_to(REPO)))
def test_join_tokens_are_never_printed(path):
    loaded = yaml.load(path.read_text(), Loader=yaml.BaseLoader)  # noqa: S506  (BaseLoader builds no objects)
    shown = [task.get("name") for task in tasks(loaded) if returns_join_tokens(task) and task.get("no_log") != "true"]
    assert not shown, f"{path.name}: these tasks print the join tokens with -v; add no_log: true: {shown}"


def test_the_swarm_role_is_checked():
    init = REPO / "roles/swarm/tasks/init.yml"
    assert sum(returns_join_tokens(task) for task in tasks(yaml.load(init.read_text(), Loader=yaml.BaseLoader))) == 2
