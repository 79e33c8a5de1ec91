"""bin/loginapp-logs (`make logs`): how it reaches each node, and the input it refuses (no Docker needed)."""

import subprocess
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader

import yaml
from loginapp_kit import REPO
from loginapp_kit.playbook import write_inventory

TOOL = REPO / "bin" / "loginapp-logs"


def logs(*args):
    return subprocess.run([str(TOOL), *args], capture_output=True, text=True, timeout=120)


def tool_module():
    loader = SourceFileLoader("loginapp_logs", str(TOOL))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def test_unknown_service_is_refused(tmp_path):
    result = logs("-i", str(write_inventory(tmp_path)), "ngnix")
    assert result.returncode == 2
    assert "unknown service ngnix: choose from nginx, app, db, backup" in result.stderr


def test_inventory_without_hosts_is_refused(tmp_path):
    result = logs("-i", str(tmp_path / "missing.yml"), "--since", "1m")
    assert result.returncode != 0
    assert "lists no hosts" in result.stderr


def test_unsupported_connection_is_named(tmp_path):
    inventory = write_inventory(tmp_path, host_vars={"node1": {"ansible_connection": "winrm"}})
    result = logs("-i", str(inventory))
    assert result.returncode != 0
    assert "node1: make logs cannot reach a node over the winrm connection" in result.stderr


def test_nodes_are_reached_as_ansible_reaches_them():
    tool = tool_module()
    ssh = {"ansible_host": "192.0.2.11", "ansible_user": "deploy", "ansible_port": 2222}
    prefix = tool.docker_on("manager1", ssh)
    assert prefix == (["ssh", "-o", "BatchMode=yes", "-p", "2222", "deploy@192.0.2.11", "docker"], True)
    # Through SSH the arguments pass a remote shell: Go templates and spaces stay one argument each.
    assert tool.command(prefix, "ps", "--format", "{{.ID}} {{.Names}}")[-1] == "ps --format '{{.ID}} {{.Names}}'"
    assert tool.docker_on("c1", {"ansible_connection": "community.docker.docker"}) == (
        ["docker", "exec", "-i", "c1", "docker"],
        False,
    )


def test_stack_name_comes_from_the_inventory_or_the_shared_default():
    tool = tool_module()
    default = yaml.safe_load((REPO / "roles/loginapp/defaults/main.yml").read_text())["loginapp_stack_name"]
    assert tool.stack_name({"node1": {}}) == default
    assert tool.stack_name({"node1": {"loginapp_stack_name": {"__ansible_unsafe": "shop"}}}) == "shop"
