"""The stack file renders for one node and for many; bad sizes are refused before anything changes."""

import re

import pytest
import yaml
from loginapp_kit import REPO
from loginapp_kit.deployment import settings
from loginapp_kit.playbook import write_inventory

DB_LABEL = {"swarm_node_labels": {"loginapp.db": "true"}}


def cluster(tmp_path, nodes):
    """Inventory of ``nodes`` hosts: up to three managers, the rest workers, node1 labelled for the database."""
    managers = [f"node{i}" for i in range(1, min(nodes, 3) + 1)]
    workers = [f"node{i}" for i in range(4, nodes + 1)]
    return write_inventory(tmp_path, managers=managers, workers=workers, host_vars={"node1": DB_LABEL})


def test_one_node_caps_nginx_at_one_replica(render):
    result, stack, _ = render()
    assert result.ok, result.output
    nginx = stack["services"]["nginx"]
    assert nginx["deploy"]["replicas"] == 1
    assert nginx["deploy"]["placement"]["max_replicas_per_node"] == 1
    assert {p["mode"] for p in nginx["ports"]} == {"host"}
    assert {(p["published"], p["target"]) for p in nginx["ports"]} == {(80, 8080), (443, 8443)}


def test_many_nodes_get_the_requested_replicas(render, tmp_path):
    result, stack, _ = render(cluster(tmp_path, 5), stack_app_replicas=4)
    assert result.ok, result.output
    assert stack["services"]["nginx"]["deploy"]["replicas"] == 2
    assert stack["services"]["app"]["deploy"]["replicas"] == 4


def test_every_service_is_limited_read_only_and_capless(render):
    _, stack, _ = render()
    for name, service in stack["services"].items():
        resources = service["deploy"]["resources"]
        assert {"cpus", "memory"} <= set(resources["limits"]), name
        assert {"cpus", "memory"} <= set(resources["reservations"]), name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert service["deploy"]["restart_policy"]["condition"] == "any", name
        assert ":" in service["image"] and not service["image"].endswith(":latest"), name


def test_app_shape(render):
    _, stack, nginx_conf = render()
    app = stack["services"]["app"]
    assert app["deploy"]["endpoint_mode"] == "dnsrr"
    assert app["deploy"]["update_config"]["order"] == "start-first"
    assert app["deploy"]["update_config"]["failure_action"] == "rollback"
    assert "healthcheck" in app
    # Replicas are replaced one at a time, further apart than the edge polls their addresses.
    assert app["deploy"]["update_config"]["parallelism"] == 1
    edge = stack["services"]["nginx"]["environment"]
    assert edge["EDGE_UPSTREAM_INTERVAL"] == "1"
    assert app["deploy"]["update_config"]["delay"] == "2s"
    # The edge lists the app's replicas in the file that nginx.conf's upstream block includes.
    assert edge["EDGE_UPSTREAM_NAME"] == "app"
    assert edge["EDGE_UPSTREAM_FILE"] == "/tmp/upstreams/app.conf"
    assert "include /tmp/upstreams/*.conf;" in nginx_conf
    # Secrets arrive as files, never as values in the environment.
    assert app["environment"]["LOGINAPP_SECRET_KEY_FILE"] == "/run/secrets/secret_key"
    assert not any("PASSWORD=" in str(v) or k.endswith(("_KEY", "_PASSWORD")) for k, v in app["environment"].items())
    assert stack["secrets"]["secret_key"] == {"external": True, "name": "loginapp_secret_key_v1"}
    # Earlier keys stay accepted after a rotation (playbooks/rotate-secret-key.yml).
    assert app["environment"]["LOGINAPP_SECRET_KEY_FALLBACKS_FILE"] == "/run/secrets/secret_key_fallbacks"
    assert {s["source"] for s in app["secrets"]} == {"secret_key", "secret_key_fallbacks", "db_password", "db_ca"}
    # TLS to the database, verified against the internal CA and the service's name.
    assert app["environment"]["LOGINAPP_DATABASE_URL"] == (
        "postgresql+psycopg://loginapp@db:5432/loginapp?sslmode=verify-full&sslrootcert=/run/secrets/db_ca"
    )


def test_every_service_has_a_pids_limit(render):
    _, stack, _ = render()
    limits = {name: service["deploy"]["resources"]["limits"].get("pids") for name, service in stack["services"].items()}
    assert limits == {"nginx": 512, "app": 256, "db": 256, "backup": 32}


def test_old_cli_gets_no_pids_limit(render):
    result, stack, _ = render(render_cli_version="20.10.24+dfsg1")
    assert result.ok, result.output
    for name, service in stack["services"].items():
        assert "pids" not in service["deploy"]["resources"]["limits"], name


def test_backend_network_is_encrypted_when_every_node_can(render, tmp_path):
    result, stack, _ = render(cluster(tmp_path, 2), stack_network_encrypt=True)
    assert result.ok, result.output
    assert stack["networks"]["backend"] == {
        "driver": "overlay",
        "attachable": False,
        "driver_opts": {"encrypted": "true"},
    }
    # auto on this machine, whose kernel has no IPsec ESP: plain overlay.
    result, stack, _ = render(cluster(tmp_path, 2), stack_network_encrypted="auto")
    assert result.ok, result.output
    assert stack["networks"]["backend"] == {"driver": "overlay", "attachable": False}


def test_db_is_pinned_with_a_volume(render):
    _, stack, _ = render()
    db = stack["services"]["db"]
    assert db["deploy"]["placement"]["constraints"] == ["node.labels.loginapp.db == true"]
    assert {"type": "volume", "source": "db-data", "target": "/var/lib/postgresql/data"} in db["volumes"]
    # The server holds no password (the role sets the app's through its socket): a new one never restarts it.
    # Its one secret is its TLS certificate and key, readable by its user alone (PostgreSQL insists).
    assert not any("PASSWORD" in name for name in db["environment"])
    assert db["secrets"] == [{"source": "db_tls", "target": "db_tls", "uid": "999", "gid": "999", "mode": 0o400}]
    assert db["environment"]["POSTGRES_TLS_FILE"] == "/run/secrets/db_tls"


def test_backups_are_scheduled_on_the_database_node(render):
    _, stack, _ = render()
    backup = stack["services"]["backup"]
    assert backup["image"] == stack["services"]["db"]["image"]
    assert backup["deploy"]["replicas"] == 1
    assert backup["deploy"]["placement"] == stack["services"]["db"]["deploy"]["placement"]
    assert {"type": "volume", "source": "db-backups", "target": "/backups"} in backup["volumes"]
    assert backup["environment"]["BACKUP_INTERVAL"] == "86400" and backup["environment"]["BACKUP_KEEP"] == "7"
    assert [s["source"] for s in backup["secrets"]] == ["db_password", "db_ca"]
    assert backup["environment"]["PGSSLMODE"] == "verify-full"
    assert backup["environment"]["PGSSLROOTCERT"] == "/run/secrets/db_ca"
    assert backup["healthcheck"] == {"disable": True}


def test_per_client_request_limit_can_be_turned_off(render):
    result, _, nginx_conf = render(stack_nginx_client_requests=0)
    assert result.ok, result.output
    assert "limit_conn" not in nginx_conf


def test_gunicorn_sizing_is_the_apps_unless_set(render):
    _, stack, _ = render()
    assert not {"LOGINAPP_WORKERS", "LOGINAPP_THREADS"} & set(stack["services"]["app"]["environment"])
    _, stack, _ = render(stack_app_workers=3, stack_app_threads=8)
    environment = stack["services"]["app"]["environment"]
    assert (environment["LOGINAPP_WORKERS"], environment["LOGINAPP_THREADS"]) == ("3", "8")


def test_backups_can_be_turned_off(render):
    _, stack, _ = render(stack_backup_interval=0)
    assert stack["services"]["backup"]["deploy"]["replicas"] == 0


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"stack_app_replicas": 0}, "must be at least 1"),
        ({"stack_app_memory": "256"}, "stack_app_memory is '256': give a number with a unit"),
        ({"stack_nginx_cpus": "half"}, "stack_nginx_cpus is 'half'"),
        ({"stack_health_interval": "1m"}, "stack_health_interval is '1m': give a number of seconds"),
        ({"stack_nginx_upstream_interval": "0s"}, "stack_nginx_upstream_interval (0s) a number of seconds of at least"),
        ({"stack_nginx_upstream_keepalive": -1}, "stack_nginx_upstream_keepalive (-1) must be 0 (off) or more"),
        # nginx's own grammars: refused here, not by nginx in the middle of a rollout.
        ({"stack_nginx_login_rate": "10perminute"}, "stack_nginx_login_rate is '10perminute': give requests per"),
        ({"stack_nginx_client_max_body_size": "1 MB"}, "stack_nginx_client_max_body_size is '1 MB': give a size"),
        ({"stack_nginx_proxy_read_timeout": "30 sec"}, "stack_nginx_proxy_read_timeout is '30 sec': give a time"),
        ({"stack_nginx_access_log_buffer": "64k"}, "stack_nginx_access_log_buffer is '64k': give \"\" (unbuffered) or"),
        ({"tls_mode": "letsencrypt"}, "tls_mode must be one of: selfsigned, provided"),
        ({"stack_app_replicas": "two"}, "stack_app_replicas must be a int"),
        ({"stack_backup_keep": 0}, "stack_backup_keep (0) at least 1"),
        ({"stack_backup_memory": "1 GB"}, "stack_backup_memory is '1 GB'"),
        ({"stack_nginx_client_requests": -1}, "stack_nginx_client_requests (-1) must be 0 (no limit) or more"),
        ({"stack_nginx_client_zone_size": "10 MB"}, "stack_nginx_client_zone_size is '10 MB': give a size"),
    ],
)
def test_bad_inputs_fail_in_preflight(run_playbook, tmp_path, extra_vars, message):
    inventory = write_inventory(tmp_path, host_vars={"node1": DB_LABEL})
    result = run_playbook("playbooks/preflight.yml", inventory, extra_vars=extra_vars)
    assert result.returncode != 0
    assert result.says(message), result.output


def test_preflight_names_every_misformatted_value_at_once(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path, host_vars={"node1": DB_LABEL})
    bad = {"stack_app_memory": "256", "stack_nginx_login_rate": "fast", "stack_update_monitor": "5"}
    result = run_playbook("playbooks/preflight.yml", inventory, extra_vars=bad)
    assert result.returncode != 0
    for name, value in bad.items():
        assert result.says(f"{name} is '{value}': give"), result.output


def test_database_label_on_no_node_fails_in_preflight(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path, managers=("node1", "node2", "node3"))
    result = run_playbook("playbooks/preflight.yml", inventory)
    assert result.returncode != 0
    assert result.says("Exactly one host needs swarm_node_labels with loginapp.db"), result.output


def test_nginx_pinned_to_labelled_edge_nodes(render, tmp_path):
    edge = {"swarm_node_labels": {"loginapp.edge": "true"}}
    inventory = write_inventory(
        tmp_path,
        managers=["node1", "node2", "node3"],
        workers=["node4"],
        host_vars={"node1": {"swarm_node_labels": {"loginapp.db": "true", "loginapp.edge": "true"}}, "node4": edge},
    )
    result, stack, _ = render(inventory, stack_nginx_node_label="loginapp.edge", stack_nginx_replicas=3)
    assert result.ok, result.output
    nginx = stack["services"]["nginx"]
    assert nginx["deploy"]["placement"]["constraints"] == ["node.labels.loginapp.edge == true"]
    assert nginx["deploy"]["replicas"] == 2  # only two nodes carry the label


def test_edge_label_on_no_node_fails_in_preflight(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path, host_vars={"node1": DB_LABEL})
    result = run_playbook("playbooks/preflight.yml", inventory, extra_vars={"stack_nginx_node_label": "loginapp.edge"})
    assert result.returncode != 0
    assert result.says("no host has swarm_node_labels"), result.output


def test_shared_settings_are_one_edit_each(render, run_playbook, tmp_path):
    """Stack name, app port and node groups are set once (roles/loginapp) and reach every place that uses them."""
    inventory = write_inventory(
        tmp_path,
        managers=["lead1", "lead2", "lead3"],
        workers=["crew1"],
        host_vars={"lead2": DB_LABEL},
        groups=("leaders", "crew"),
        group_vars={"loginapp_managers_group": "leaders", "loginapp_workers_group": "crew"},
    )
    result, stack, nginx_conf = render(inventory, loginapp_stack_name="shop", loginapp_app_port=9000)
    assert result.ok, result.output

    app = stack["services"]["app"]
    assert app["environment"]["LOGINAPP_PORT"] == "9000"
    assert "/dev/tcp/127.0.0.1/9000" in " ".join(app["healthcheck"]["test"])
    assert stack["services"]["nginx"]["environment"]["EDGE_UPSTREAM_PORT"] == "9000"
    assert re.findall(r"server 127\.0\.0\.1:(\d+) down;", nginx_conf) == ["9000"]
    names = [ref["name"] for ref in stack["secrets"].values()]
    assert names and all(name.startswith("shop_") for name in names), names
    # Three edges possible on four nodes of the renamed groups: the default two nginx replicas fit.
    assert stack["services"]["nginx"]["deploy"]["replicas"] == 2

    assert run_playbook("playbooks/preflight.yml", inventory).ok
    resolved = settings(str(inventory))
    assert resolved["loginapp_managers"] == ["lead1", "lead2", "lead3"]
    assert resolved["loginapp_first_manager"] == "lead1"
    assert resolved["loginapp_db_hosts"] == ["lead2"]


def test_values_typed_on_the_command_line_render_the_same(render_templates, tmp_path):
    """`-e name=value` gives strings: each int and bool of the shared settings and the stack role, given as
    a string of its default, renders exactly what the default renders."""
    as_strings = {}
    for role in ("loginapp", "stack"):
        specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        for entry_point in specs.values():
            for name, spec in (entry_point.get("options") or {}).items():
                if spec.get("type") == "int" and "default" in spec:
                    as_strings[name] = str(spec["default"])
                elif spec.get("type") == "bool" and "default" in spec:
                    as_strings[name] = "yes" if spec["default"] else "no"
    assert len(as_strings) > 20
    _, stack, nginx_conf = render_templates(tmp_path / "typed")
    run, *rendered = render_templates(tmp_path / "strings", **as_strings)
    assert run.ok, run.output
    assert rendered == [stack, nginx_conf]
