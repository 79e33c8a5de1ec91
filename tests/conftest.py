"""Shared helpers for tests that run the project's playbooks on this machine."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def write_inventory(directory, managers=("node1",), workers=(), host_vars=None):
    """An inventory of local-connection hosts, so no SSH is needed."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    host_vars = host_vars or {}

    def hosts(names):
        return {name: {**local, **host_vars.get(name, {})} for name in names}

    inventory = {
        "all": {
            "vars": {"ansible_become": False},
            "children": {"managers": {"hosts": hosts(managers)}, "workers": {"hosts": hosts(workers)}},
        }
    }
    path = Path(directory) / "hosts.yml"
    path.write_text(json.dumps(inventory))
    return path


@pytest.fixture
def run_playbook(tmp_path):
    """Run a playbook of the repository; returns the CompletedProcess (output in .stdout)."""

    def run(playbook, inventory, *extra_args, extra_vars=None):
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FACT_CACHING_CONNECTION": str(tmp_path / "facts"),
        }
        command = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook), *extra_args]
        if extra_vars is not None:
            command += ["-e", json.dumps(extra_vars)]
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)

    return run
