"""Bad inputs fail in the preflight stage, with a message naming the culprit."""

import os
import socket
import sys
from pathlib import Path

import pytest
from loginapp_kit.playbook import write_inventory


def assert_refused(result, *fragments):
    assert result.returncode != 0, result.output
    for fragment in fragments:
        assert result.says(fragment), result.output


def test_valid_inputs_pass(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path, host_vars={"node1": {"swarm_node_labels": {"loginapp.db": "true"}}})
    result = run_playbook("playbooks/preflight.yml", inventory)
    assert result.ok, result.output


def test_misspelled_variable_is_named(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path)
    result = run_playbook("playbooks/preflight.yml", inventory, extra_vars={"swarm_node_lables": {"a": "b"}})
    assert_refused(result, "Unknown variable(s) for role swarm", "swarm_node_lables (did you mean swarm_node_labels?)")


def test_site_suggests_the_closest_name(run_playbook, tmp_path):
    # site.yml imports preflight.yml from playbooks/, whose filter plugins must load too.
    inventory = write_inventory(tmp_path)
    result = run_playbook("site.yml", inventory, extra_vars={"stack_app_replica": 3, "stack_qwerty": 1})
    suggestion = "stack_app_replica (did you mean stack_app_replicas?), stack_qwerty."
    assert_refused(result, suggestion, "roles/stack/README.md")


def test_string_where_a_list_is_expected(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path)
    result = run_playbook("playbooks/preflight.yml", inventory, extra_vars={"docker_engine_users": "bob"})
    assert_refused(result, 'docker_engine_users must be a list, got "bob"')


def test_command_line_numbers_and_booleans_are_accepted(run_playbook, tmp_path):
    # `-e name=value` gives strings; those that are exactly an int or a boolean word convert safely.
    inventory = write_inventory(tmp_path, host_vars={"node1": {"swarm_node_labels": {"loginapp.db": "true"}}})
    assignments = [
        "stack_app_replicas=3",
        "stack_smoke_test=false",
        "tls_renew_days=20",
        "docker_engine_overlay_repair=yes",
    ]
    result = run_playbook("playbooks/preflight.yml", inventory, *[arg for a in assignments for arg in ("-e", a)])
    assert result.ok, result.output


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("stack_app_replicas=three", 'stack_app_replicas must be a int, got "three"'),
        ("stack_app_replicas=2.5", 'stack_app_replicas must be a int, got "2.5"'),
        ("stack_smoke_test=maybe", 'stack_smoke_test must be a bool, got "maybe"'),
        ("swarm_autolock=maybe", 'swarm_autolock must be a bool, got "maybe"'),
    ],
)
def test_command_line_values_that_do_not_convert_are_refused(run_playbook, tmp_path, assignment, message):
    result = run_playbook("playbooks/preflight.yml", write_inventory(tmp_path), "-e", assignment)
    assert_refused(result, message)


def test_unknown_choice(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path)
    result = run_playbook("playbooks/preflight.yml", inventory, extra_vars={"docker_engine_source": "snap"})
    assert_refused(result, "docker_engine_source must be one of: distribution, upstream")


def test_inventory_without_manager(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path, managers=(), workers=("node1",))
    result = run_playbook("playbooks/preflight.yml", inventory)
    assert_refused(result, "'managers' is empty or missing")


def test_host_in_both_groups(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path, managers=("node1",), workers=("node1",))
    result = run_playbook("playbooks/preflight.yml", inventory)
    assert_refused(result, "Hosts in both 'managers' and 'workers': node1")


def test_a_stage_run_alone_checks_its_own_inputs(run_playbook, tmp_path):
    # site.yml checks each role's inputs once, in preflight; a stage run on its own must still check them.
    inventory = write_inventory(tmp_path, managers=("node1",), workers=("node1",))
    result = run_playbook("playbooks/cluster.yml", inventory)
    assert_refused(result, "Hosts in both 'managers' and 'workers': node1")


def test_even_number_of_managers_warns(run_playbook, tmp_path):
    inventory = write_inventory(
        tmp_path, managers=("node1", "node2"), host_vars={"node1": {"swarm_node_labels": {"loginapp.db": "true"}}}
    )
    result = run_playbook("playbooks/preflight.yml", inventory)
    assert result.ok, result.output
    assert result.says("2 managers tolerate no more failures than 1"), result.output


def test_unreachable_host_stops_site_before_any_change(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path, managers=("node1",), workers=("ghost",))
    inventory.write_text(
        inventory.read_text().replace(
            '"ghost": {"ansible_connection": "local"',
            '"ghost": {"ansible_connection": "ssh", "ansible_host": "192.0.2.254", '
            '"ansible_ssh_common_args": "-o ConnectTimeout=3"',
        )
    )
    result = run_playbook("site.yml", inventory)
    assert_refused(result, "fatal: [ghost]: UNREACHABLE!")
    assert "docker_engine :" not in result.stdout, "the hosts stage ran despite an unreachable host"


def test_published_port_held_by_another_server_is_named(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path, host_vars={"node1": {"swarm_node_labels": {"loginapp.db": "true"}}})
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = run_playbook("playbooks/preflight.yml", inventory, extra_vars={"stack_https_port": port})
    this_process = f"{Path(f'/proc/{os.getpid()}/comm').read_text().strip()} (pid {os.getpid()})"
    assert_refused(result, f"Port {port} is in use by {this_process} on node1", "stack_https_port")


def test_check_mode_is_refused_before_any_stage(run_playbook, tmp_path):
    inventory = write_inventory(tmp_path, host_vars={"node1": {"swarm_node_labels": {"loginapp.db": "true"}}})
    result = run_playbook("site.yml", inventory, "--check")
    assert_refused(result, "Check mode (--check) is not supported", "make status")
    assert "Gathering Facts" not in result.stdout, "hosts were contacted in check mode"
    assert "docker_engine :" not in result.stdout, "the hosts stage ran in check mode"


def test_example_inventory_passes_preflight(run_playbook):
    """The inventory the README tells operators to copy is valid (hosts reached locally here)."""
    local = {"ansible_connection": "local", "ansible_become": False, "ansible_python_interpreter": sys.executable}
    result = run_playbook("playbooks/preflight.yml", "inventory/example", extra_vars=local)
    assert result.ok, result.output
    assert "manager1                   : ok=" in result.stdout


def test_encrypted_overlay_is_refused_on_kernels_without_esp(run_playbook, tmp_path):
    """This machine's kernel has no IPsec ESP (CONFIG_INET_ESP unset): `true` names each node and the kernel's
    answer before anything changes; `auto` deploys unencrypted and warns, naming them."""
    inventory = write_inventory(
        tmp_path,
        managers=("node1",),
        workers=("node2",),
        host_vars={"node1": {"swarm_node_labels": {"loginapp.db": "true"}}},
    )
    if run_playbook("playbooks/preflight.yml", inventory, "-e", "stack_network_encrypted=false").returncode != 0:
        pytest.fail("preflight fails on this inventory even without encryption")
    refused = run_playbook("playbooks/preflight.yml", inventory, extra_vars={"stack_network_encrypted": True})
    assert_refused(refused, "stack_network_encrypted is true, but these nodes' kernels cannot do IPsec ESP")
    assert_refused(refused, "node1 (", "node2 (")

    auto = run_playbook("playbooks/preflight.yml", inventory)
    assert auto.ok, auto.output
    assert auto.says("WARNING: the backend overlay (nginx to app, app to database) is not encrypted"), auto.output
    assert auto.says("node1 (") and auto.says("node2 ("), auto.output


def test_network_encryption_choices(run_playbook, tmp_path):
    result = run_playbook(
        "playbooks/preflight.yml", write_inventory(tmp_path), "-e", "stack_network_encrypted=sometimes"
    )
    assert_refused(result, "stack_network_encrypted must be one of: auto, true, false")


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"firewall_ssh_sources": ["10.0.0.0/33"]}, "Not an IP address or network (CIDR): 10.0.0.0/33"),
        ({"firewall_open_ports": ["9100"]}, 'firewall_open_ports wants "PORT/tcp" or "PORT/udp" (1-65535), not: 9100'),
        ({"firewall_default_inbound": "reject"}, "firewall_default_inbound must be one of: drop, accept"),
    ],
)
def test_bad_firewall_inputs_are_refused(run_playbook, tmp_path, extra, message):
    result = run_playbook("playbooks/preflight.yml", write_inventory(tmp_path), extra_vars=extra)
    assert_refused(result, message)


@pytest.mark.parametrize(
    "option, message",
    [
        ({"live-restore": True}, "live-restore must be false"),
        ({"userns-remap": "default"}, "userns-remap is not supported"),
    ],
)
def test_engine_options_the_stack_cannot_run_under_are_refused(run_playbook, tmp_path, option, message):
    result = run_playbook(
        "playbooks/preflight.yml", write_inventory(tmp_path), extra_vars={"docker_engine_daemon_options_extra": option}
    )
    assert_refused(result, message)
