"""The stack file renders for one node and for many; bad sizes are refused before anything changes."""

import pytest
import yaml
from conftest import write_inventory

DB_LABEL = {"swarm_node_labels": {"loginapp.db": "true"}}


def render(run_playbook, tmp_path, nodes=1, cli_version="28.2.2", extra_vars=None):
    managers = [f"node{i}" for i in range(1, min(nodes, 3) + 1)]
    workers = [f"node{i}" for i in range(4, nodes + 1)]
    inventory = write_inventory(tmp_path, managers=managers, workers=workers, host_vars={"node1": DB_LABEL})
    dest = tmp_path / "stack.yml"
    result = run_playbook(
        "tests/render/stack.yml",
        inventory,
        extra_vars={"render_dest": str(dest), "render_cli_version": cli_version, **(extra_vars or {})},
    )
    return result, (yaml.safe_load(dest.read_text()) if result.returncode == 0 else None)


def test_one_node_caps_nginx_at_one_replica(run_playbook, tmp_path):
    result, stack = render(run_playbook, tmp_path, nodes=1)
    assert result.returncode == 0, result.stdout
    nginx = stack["services"]["nginx"]
    assert nginx["deploy"]["replicas"] == 1
    assert nginx["deploy"]["placement"]["max_replicas_per_node"] == 1
    assert {p["mode"] for p in nginx["ports"]} == {"host"}
    assert {(p["published"], p["target"]) for p in nginx["ports"]} == {(80, 8080), (443, 8443)}


def test_many_nodes_get_the_requested_replicas(run_playbook, tmp_path):
    result, stack = render(run_playbook, tmp_path, nodes=5, extra_vars={"stack_app_replicas": 4})
    assert result.returncode == 0, result.stdout
    assert stack["services"]["nginx"]["deploy"]["replicas"] == 2
    assert stack["services"]["app"]["deploy"]["replicas"] == 4


def test_every_service_is_limited_read_only_and_capless(run_playbook, tmp_path):
    _, stack = render(run_playbook, tmp_path)
    for name, service in stack["services"].items():
        resources = service["deploy"]["resources"]
        assert {"cpus", "memory"} <= set(resources["limits"]), name
        assert {"cpus", "memory"} <= set(resources["reservations"]), name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert service["deploy"]["restart_policy"]["condition"] == "any", name
        assert ":" in service["image"] and not service["image"].endswith(":latest"), name


def test_app_shape(run_playbook, tmp_path):
    _, stack = render(run_playbook, tmp_path)
    app = stack["services"]["app"]
    assert app["deploy"]["endpoint_mode"] == "dnsrr"
    assert app["deploy"]["update_config"]["order"] == "start-first"
    assert app["deploy"]["update_config"]["failure_action"] == "rollback"
    assert app["deploy"]["resources"]["limits"]["pids"] == 256
    assert "healthcheck" in app
    # Secrets arrive as files, never as values in the environment.
    assert app["environment"]["LOGINAPP_SECRET_KEY_FILE"] == "/run/secrets/secret_key"
    assert not any("PASSWORD=" in str(v) or k.endswith(("_KEY", "_PASSWORD")) for k, v in app["environment"].items())
    assert stack["secrets"]["secret_key"] == {"external": True, "name": "loginapp_secret_key_v1"}


def test_old_cli_gets_no_pids_limit(run_playbook, tmp_path):
    result, stack = render(run_playbook, tmp_path, cli_version="20.10.24+dfsg1")
    assert result.returncode == 0, result.stdout
    assert "pids" not in stack["services"]["app"]["deploy"]["resources"]["limits"]


def test_db_is_pinned_with_a_volume(run_playbook, tmp_path):
    _, stack = render(run_playbook, tmp_path)
    db = stack["services"]["db"]
    assert db["deploy"]["placement"]["constraints"] == ["node.labels.loginapp.db == true"]
    assert {"type": "volume", "source": "db-data", "target": "/var/lib/postgresql/data"} in db["volumes"]
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"stack_app_replicas": 0}, "must be at least 1"),
        ({"stack_app_memory": "256"}, "stack_app_memory is '256': give a number with a unit"),
        ({"stack_nginx_cpus": "half"}, "stack_nginx_cpus is 'half'"),
        ({"tls_mode": "letsencrypt"}, "tls_mode must be one of: selfsigned, provided"),
        ({"stack_app_replicas": "two"}, "stack_app_replicas must be a int"),
    ],
)
def test_bad_inputs_fail_in_preflight(run_playbook, tmp_path, extra_vars, message):
    inventory = write_inventory(tmp_path, host_vars={"node1": DB_LABEL})
    result = run_playbook("playbooks/preflight.yml", inventory, extra_vars=extra_vars)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr, result.stdout


def test_database_label_on_no_node_fails_in_preflight(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path, managers=("node1", "node2", "node3"))
    result = run_playbook("playbooks/preflight.yml", inventory)
    assert result.returncode != 0
    assert "Exactly one host needs swarm_node_labels with loginapp.db" in result.stdout


def test_nginx_pinned_to_labelled_edge_nodes(run_playbook, tmp_path):
    edge = {"swarm_node_labels": {"loginapp.edge": "true"}}
    managers, workers = ["node1", "node2", "node3"], ["node4"]
    inventory = write_inventory(
        tmp_path,
        managers=managers,
        workers=workers,
        host_vars={"node1": {"swarm_node_labels": {"loginapp.db": "true", "loginapp.edge": "true"}}, "node4": edge},
    )
    dest = tmp_path / "stack.yml"
    result = run_playbook(
        "tests/render/stack.yml",
        inventory,
        extra_vars={
            "render_dest": str(dest),
            "render_cli_version": "28.2.2",
            "stack_nginx_node_label": "loginapp.edge",
            "stack_nginx_replicas": 3,
        },
    )
    assert result.returncode == 0, result.stdout
    nginx = yaml.safe_load(dest.read_text())["services"]["nginx"]
    assert nginx["deploy"]["placement"]["constraints"] == ["node.labels.loginapp.edge == true"]
    assert nginx["deploy"]["replicas"] == 2  # only two nodes carry the label


def test_edge_label_on_no_node_fails_in_preflight(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path, host_vars={"node1": DB_LABEL})
    result = run_playbook("playbooks/preflight.yml", inventory, extra_vars={"stack_nginx_node_label": "loginapp.edge"})
    assert result.returncode != 0
    assert "no host has swarm_node_labels" in result.stdout
