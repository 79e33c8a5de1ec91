"""What the convergence wait concludes from one poll of the swarm (roles/stack/tasks/wait.yml).

The role's own variables judge lines written exactly as the Docker CLI prints
them: a service Swarm is not updating that fails the same way three times
stops the wait at once; a service Swarm is updating is left to Swarm's
rollback; failures from before this deploy never count. One playbook run
judges every poll below.
"""

import json

import pytest
from loginapp_kit.playbook import run_playbook, write_inventory

STARTED = "2026-12-03T12:00:00"
BEFORE = ["loginapp_app loginapp/app:old", "loginapp_db loginapp/db:cccc", 'network {"encrypted":""}']
EXIT_1 = "task: non-zero exit (1)"
NO_IMAGE = "No such image: loginapp/app:new"


def failure(service, second, error=EXIT_1, state="failed", container="c", image="loginapp/app:new"):
    """A task line as the wait prints it: failure|service|Status.Timestamp|state|image|error|container."""
    return f'failure|{service}|"2026-12-03T12:00:{second:02d}.123456789Z"|{state}|{image}|{error}|{container}{second}'


def services(app_state="none", app_running="0/2"):
    """The replica and update lines: the app new (no update status) or in the given update state."""
    app_started = "-" if app_state == "none" else '"2026-12-03T12:00:01.5Z"'
    return [
        f"loginapp_app {app_running}",
        "loginapp_db 1/1",
        f"loginapp_app loginapp/app:new {app_started} {app_state}",
        'loginapp_db loginapp/db:cccc "2026-12-03T11:00:00Z" completed',
    ]


def task(service, created, state="running", desired="running"):
    """A task Swarm has not stopped, as the wait prints it: task|service|desired state|CreatedAt|state."""
    return f'task|{service}|{desired}|"2026-12-03T12:00:{created}Z"|{state}'


THREE_EXITS = [failure("app", 3), failure("app", 6), failure("app", 9)]
POLLS = {
    "three_same": [*services(), *THREE_EXITS],
    "two_same": [*services(), failure("app", 3), failure("app", 6)],
    "changing": [*services(), failure("app", 3), failure("app", 6, "task: non-zero exit (137)"), failure("app", 9)],
    "rejected": [*services(), *(failure("app", s, NO_IMAGE, state="rejected", container="") for s in (3, 6, 9))],
    "updating": [*services(app_state="updating"), *THREE_EXITS],
    "rollback_started": [*services(app_state="rollback_started"), *THREE_EXITS],
    "rollback_completed": [*services(app_state="rollback_completed"), *THREE_EXITS],
    "old_failures": [
        *services(),
        *(f'failure|app|"2026-12-03T11:59:{s}.5Z"|failed|loginapp/app:new|{EXIT_1}|old{s}' for s in (10, 20, 30)),
        failure("app", 3),
    ],
    # Before the update registers, tasks of the image being replaced may still fail.
    "old_image": [*services(), *(failure("app", s, image="loginapp/app:old") for s in (3, 6, 9)), failure("app", 12)],
    "error_with_bar": [*services(), *(failure("app", s, "starting container failed: a|b") for s in (3, 6, 9))],
    "shutdown_only": [*services(), failure("app", 3, "", state="shutdown")],
    "converged": [*services(app_state="completed", app_running="2/2"), failure("app", 3, "", state="shutdown")],
    # The update started at 12:00:01.5; Docker prints fractions without trailing zeros.
    "rolled_out": [*services(app_state="updating", app_running="2/2"), task("app", "01.50001"), task("app", "09")],
    "one_old_task": [*services(app_state="updating", app_running="2/2"), task("app", "01.49"), task("app", "09")],
    "new_task_starting": [
        *services(app_state="updating", app_running="2/2"),
        task("app", "01.4"),
        task("app", "02", state="starting"),
        task("app", "09"),
    ],
    "old_task_stopping": [
        *services(app_state="updating", app_running="2/2"),
        task("app", "03"),
        task("app", "09"),
        failure("app", 10, "", state="shutdown"),
    ],
    # An old task still finishing its requests is counted as running by `docker service ls`.
    "old_task_draining": [
        *services(app_state="updating", app_running="3/2"),
        task("app", "03"),
        task("app", "09"),
        failure("app", 10, "", state="running"),
    ],
    "one_task_short": [*services(app_state="updating", app_running="1/2"), task("app", "09")],
    "rolling_back": [*services(app_state="rollback_started", app_running="2/2"), task("app", "05"), task("app", "09")],
    # A task Swarm restarted during the update (its image kept failing) took a slot the update had filled: Swarm
    # called the update complete with two tasks in each slot, and `docker service ls` said 4/2 from then on.
    "extra_tasks_after_update": [
        *services(app_state="completed", app_running="4/2"),
        *(task("app", created) for created in ("02", "03", "06", "09")),
    ],
    # Once the wait had Swarm reconcile the app, its update status is gone.
    "reconciled": [*services(app_state="none", app_running="2/2"), task("app", "06"), task("app", "09")],
}
# Polls judged as if tasks/wait_reconcile.yml had already run for the app.
RECONCILED = {"reconciled", "extra_tasks_after_update_reconciled"}
POLLS["extra_tasks_after_update_reconciled"] = POLLS["extra_tasks_after_update"]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """Each poll's verdict: converged, rolled_back, failing, failures, to_reconcile, summary."""
    directory = tmp_path_factory.mktemp("wait")
    inventory = write_inventory(directory, host_vars={"node1": {"swarm_node_labels": {"loginapp.db": "true"}}})
    before = {"stdout_lines": [STARTED, *BEFORE]}
    polls = {
        name: {
            "stack_status": {"rc": 0, "stdout_lines": lines},
            "stack_before_deploy": before,
            "stack_reconciled_services": ["app"] if name in RECONCILED else [],
        }
        for name, lines in POLLS.items()
    }
    run = run_playbook(
        "tests/render/wait_verdict.yml", inventory, {"render_dir": str(directory), "render_polls": polls},
        facts_dir=directory / "facts",
    )  # fmt: skip
    assert run.ok, run.output
    return {name: json.loads((directory / f"{name}.json").read_text()) for name in POLLS}


def test_a_service_failing_the_same_way_three_times_stops_the_wait(verdicts):
    verdict = verdicts["three_same"]
    assert verdict["failing"] == ["app"]
    assert not verdict["converged"] and not verdict["rolled_back"]
    assert verdict["failures"]["app"]["count"] == 3
    assert verdict["failures"]["app"]["error"] == EXIT_1
    assert verdict["failures"]["app"]["container"] == "c9", "the newest failed task's container"


def test_two_failures_or_changing_errors_keep_it_waiting(verdicts):
    assert verdicts["two_same"]["failing"] == []
    assert verdicts["changing"]["failing"] == []
    assert verdicts["changing"]["failures"]["app"]["count"] == 3


def test_rejected_tasks_count_like_failed_ones(verdicts):
    assert verdicts["rejected"]["failing"] == ["app"]
    assert verdicts["rejected"]["failures"]["app"]["error"] == NO_IMAGE


def test_a_service_swarm_is_updating_is_left_to_swarms_rollback(verdicts):
    for state in ("updating", "rollback_started"):
        assert verdicts[state]["failing"] == [], state
        assert not verdicts[state]["rolled_back"], state
    assert verdicts["rollback_completed"]["rolled_back"]


def test_only_failures_of_the_current_image_stop_it(verdicts):
    assert verdicts["old_image"]["failing"] == []
    assert verdicts["old_image"]["failures"]["app"]["count"] == 4, "all of this deploy's failures are reported"
    assert verdicts["error_with_bar"]["failing"] == ["app"]
    assert verdicts["error_with_bar"]["failures"]["app"]["error"] == "starting container failed: a|b"


def test_failures_from_before_this_deploy_do_not_count(verdicts):
    assert verdicts["old_failures"]["failing"] == []
    assert verdicts["old_failures"]["failures"]["app"]["count"] == 1
    # Tasks shut down by an update are not failures.
    assert verdicts["shutdown_only"]["failures"] == {}


def test_converged_stack_and_its_summary(verdicts):
    verdict = verdicts["converged"]
    assert verdict["converged"] and verdict["failing"] == []
    assert verdict["summary"][:2] == [
        "app: loginapp/app:old -> loginapp/app:new, rolled, 2/2 running",
        "db: loginapp/db:cccc, unchanged, 1/1 running",
    ]


def test_the_wait_ends_once_every_task_of_an_update_is_new_and_running(verdicts):
    verdict = verdicts["rolled_out"]
    assert verdict["converged"], "Swarm's monitor period after the last task is not waited for"
    rolled = "app: loginapp/app:old -> loginapp/app:new, rolled (Swarm watches it 10s more), 2/2 running"
    assert verdict["summary"][0] == rolled
    assert verdicts["old_task_stopping"]["converged"], "a stopped task is not one meant to run"
    assert verdicts["old_task_draining"]["converged"], "nor one Swarm is stopping"


def test_an_update_with_an_old_or_starting_task_or_a_rollback_is_waited_for(verdicts):
    for poll in ("one_old_task", "new_task_starting", "one_task_short", "rolling_back"):
        assert not verdicts[poll]["converged"], poll


def test_extra_tasks_left_after_an_update_make_the_wait_have_swarm_reconcile_the_service(verdicts):
    verdict = verdicts["extra_tasks_after_update"]
    assert not verdict["converged"] and verdict["failing"] == []
    assert verdict["to_reconcile"] == ["app"]
    # Once asked, the wait waits for Swarm to remove them, and then says the app rolled.
    assert verdicts["extra_tasks_after_update_reconciled"]["to_reconcile"] == []
    assert not verdicts["extra_tasks_after_update_reconciled"]["converged"]
    assert verdicts["reconciled"]["converged"]
    assert verdicts["reconciled"]["summary"][0] == "app: loginapp/app:old -> loginapp/app:new, rolled, 2/2 running"


def test_extra_tasks_during_an_update_are_left_to_swarm(verdicts):
    for poll in ("new_task_starting", "old_task_draining", "rolled_out"):
        assert verdicts[poll]["to_reconcile"] == [], poll
