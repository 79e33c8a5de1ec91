"""Faults an operator will meet: the stack recovers by itself and no registered user is lost.

Each test registers a user, causes the fault on the host, waits until Swarm
has every service converged again and the app answers /readyz, then logs the
user in. Nothing is repaired by hand.
"""

import pytest
from conftest import STACK, service_converged, wait_for

RECOVERY_TIMEOUT = 240
pytestmark = pytest.mark.disruptive


def stack_recovered(manager, http_session) -> bool:
    services = ("nginx", "app", "db")
    if not all(service_converged(manager, service) for service in services):
        return False
    try:
        return http_session.get("/readyz").status == 200
    except OSError:  # nginx itself may still be starting
        return False


@pytest.fixture
def registered_user(new_http_session, credentials):
    username, password = credentials
    assert new_http_session().register(username, password).status == 200
    return username, password


def assert_user_can_log_in(new_http_session, username, password):
    response = new_http_session().login(username, password)
    assert response.status == 200
    assert "/login" not in response.url, response.url  # the dashboard, not the form again
    assert username in response.text


def test_killed_app_process_is_replaced(manager, task_container, http_session, new_http_session, registered_user):
    victim = task_container("app")
    manager.check_output(f"docker kill --signal KILL {victim}")
    assert wait_for(
        lambda: (
            victim not in manager.check_output(f"docker ps -q --no-trunc --filter id={victim}")
            and stack_recovered(manager, http_session)
        ),
        RECOVERY_TIMEOUT,
    ), manager.check_output(f"docker service ps --no-trunc {STACK}_app")
    assert_user_can_log_in(new_http_session, *registered_user)


def test_database_restart_keeps_users(manager, http_session, new_http_session, registered_user):
    manager.check_output(f"docker service update --detach --force {STACK}_db")
    assert wait_for(lambda: stack_recovered(manager, http_session), RECOVERY_TIMEOUT), manager.check_output(
        f"docker service ps --no-trunc {STACK}_db"
    )
    assert_user_can_log_in(new_http_session, *registered_user)


def test_engine_restart_brings_the_stack_back(manager, http_session, new_http_session, registered_user):
    manager.check_output("systemctl restart docker")
    assert wait_for(lambda: stack_recovered(manager, http_session), RECOVERY_TIMEOUT), manager.check_output(
        f"docker stack ps --no-trunc {STACK}"
    )
    assert_user_can_log_in(new_http_session, *registered_user)
