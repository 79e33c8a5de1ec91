"""Faults an operator will meet: the stack recovers by itself and no registered user is lost.

Each test registers a user, causes the fault on the host, waits until Swarm
has every service converged again, nginx reaches the app and the app passes
its readiness check (/readyz, run inside its container), then logs the user
in. Nothing is repaired by hand, and each test leaves the stack healthy.
"""

import pytest
from loginapp_kit.wait import wait_for

RECOVERY_TIMEOUT = 240
pytestmark = pytest.mark.disruptive


def stack_recovered(target) -> bool:
    if not all(target.converged(service) for service in ("nginx", "app", "db")):
        return False
    try:
        return target.client(timeout=10).get("/healthz").status == 200 and target.passes_health_check("app")
    except OSError:  # nginx itself may still be starting
        return False


@pytest.fixture
def registered_user(new_client, credentials):
    username, password = credentials
    assert new_client().register(username, password).status == 200
    return username, password


def assert_user_can_log_in(new_client, username, password):
    response = new_client().login(username, password)
    assert response.status == 200
    assert "/login" not in response.url, response.url  # the dashboard, not the form again
    assert f"Hello, {username}" in response.text


def test_killed_app_process_is_replaced(manager, target, new_client, registered_user):
    victim = target.container("app")
    manager.check_output(f"docker kill --signal KILL {victim}")
    assert wait_for(
        lambda: (
            victim not in manager.check_output(f"docker ps -q --no-trunc --filter id={victim}")
            and stack_recovered(target)
        ),
        RECOVERY_TIMEOUT,
    ), target.docker("service", "ps", "--no-trunc", target.service("app"))
    assert_user_can_log_in(new_client, *registered_user)


def test_database_restart_keeps_users(target, new_client, registered_user):
    target.docker("service", "update", "--detach", "--force", target.service("db"))
    assert wait_for(lambda: stack_recovered(target), RECOVERY_TIMEOUT), target.docker(
        "service", "ps", "--no-trunc", target.service("db")
    )
    assert_user_can_log_in(new_client, *registered_user)


def test_engine_restart_brings_the_stack_back(manager, target, new_client, registered_user):
    manager.check_output("systemctl restart docker")
    assert wait_for(lambda: stack_recovered(target), RECOVERY_TIMEOUT, errors=(RuntimeError,)), target.docker(
        "stack", "ps", "--no-trunc", target.stack
    )
    assert_user_can_log_in(new_client, *registered_user)


def test_overlay_device_left_by_the_engine_is_removed(manager, target, new_client, registered_user):
    """Docker's overlay driver can leave a network's VXLAN device in the host namespace when the
    engine stops; every task on that network is then rejected with "error creating vxlan interface:
    file exists". docker-overlay-repair (docker_engine role) deletes it before the engine starts."""
    stack_networks = ("--filter", "driver=overlay", "--filter", f"label=com.docker.stack.namespace={target.stack}")
    network = target.docker("network", "ls", "--quiet", "--no-trunc", *stack_networks).split()[0]
    vni = target.docker(
        "network", "inspect", "--format", '{{index .Options "com.docker.network.driver.overlay.vxlanid_list"}}', network
    )
    leftover = f"vx-{int(vni.split(',')[0]):06x}-{network[:5]}"  # the name the driver gives it
    try:
        manager.check_output("systemctl stop docker")
        # The stopping engine may have left it already (the fault itself); if not, plant it.
        planted = manager.run(f"ip link add {leftover} type vxlan id 16000000 dstport 4789")
        assert planted.rc == 0 or "File exists" in planted.stderr, planted.stderr
        assert manager.run(f"ip link show {leftover}").rc == 0
    finally:
        manager.check_output("systemctl start docker")
    assert wait_for(lambda: stack_recovered(target), RECOVERY_TIMEOUT, errors=(RuntimeError,)), target.docker(
        "stack", "ps", "--no-trunc", target.stack
    )
    journal = manager.check_output("journalctl --unit docker --unit docker-overlay-repair --no-pager")
    assert f"removed {leftover}" in journal
    assert_user_can_log_in(new_client, *registered_user)
