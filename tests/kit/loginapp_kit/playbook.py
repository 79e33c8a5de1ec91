"""Run the repository's playbooks as an operator does, and read what they did."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import REPO

RECAP_RE = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


@dataclass
class PlaybookRun:
    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP: host -> {ok, changed, unreachable, failed}."""
        return play_recap(self.output)

    @property
    def changed(self) -> int:
        return sum(host["changed"] for host in self.recap.values())

    def changed_tasks(self) -> list[str]:
        return changed_tasks(self.output)

    def says(self, text: str) -> bool:
        """Whether the output contains ``text``, wherever the YAML callback folded its lines."""
        return " ".join(text.split()) in " ".join(self.output.split())

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def json(self) -> dict:
        """The result document of a run made with ``json_output=True``.

        Other callbacks (the project's task timings) may print around it; the
        document is the block that starts with a line holding only "{".
        """
        start = ("\n" + self.stdout).index("\n{\n")
        return json.JSONDecoder().raw_decode(self.stdout[start:])[0]


def play_recap(output: str) -> dict[str, dict[str, int]]:
    return {
        host: {"ok": int(ok), "changed": int(changed), "unreachable": int(unr), "failed": int(failed)}
        for host, ok, changed, unr, failed in RECAP_RE.findall(output.rpartition("PLAY RECAP")[2])
    }


def changed_tasks(output: str) -> list[str]:
    """Names of the tasks that reported changed (for a readable idempotence failure)."""
    names, current = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            current = line[6:].rsplit("]", 1)[0]
        elif line.startswith("changed:") and current and current not in names:
            names.append(current)
    return names


def run_playbook(playbook: str | Path, inventory: str | Path, extra_vars: dict | None = None, *args: str,
                 facts_dir: Path | None = None, json_output: bool = False, env: dict | None = None,
                 timeout: float = 1800, log: Path | None = None) -> PlaybookRun:  # fmt: skip
    """``ansible-playbook -i INVENTORY PLAYBOOK`` from the repository root, never raising on failure.

    ``playbook`` is relative to the repository (or absolute); ``facts_dir``
    keeps the run's fact cache away from the project's; ``json_output`` selects
    the JSON callback (read it with ``.json()``); ``log`` keeps the output.
    """
    bin_dir = Path(sys.executable).parent
    environ = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "PYTHONUNBUFFERED": "1"}
    environ["PATH"] = f"{bin_dir}:{environ.get('PATH', '')}"
    if facts_dir is not None:
        environ["ANSIBLE_FACT_CACHING_CONNECTION"] = str(facts_dir)
    if json_output:
        environ["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
    environ.update(env or {})
    command = [str(bin_dir / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook), *args]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=REPO, env=environ, capture_output=True, text=True, timeout=timeout, check=False)
    run = PlaybookRun(command, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    if log:
        log.write_text(run.output)
    return run


def write_inventory(directory: Path, managers=("node1",), workers=(), host_vars: dict | None = None,
                    group_vars: dict | None = None, groups=("managers", "workers")) -> Path:  # fmt: skip
    """An inventory of local-connection hosts (no SSH) in ``directory``/hosts.yml.

    ``groups`` names the managers' and workers' groups (to test other names).
    """
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    host_vars = host_vars or {}

    def hosts(names):
        return {name: {**local, **host_vars.get(name, {})} for name in names}

    managers_group, workers_group = groups
    inventory = {
        "all": {
            # The deploy lock and audit log of these hosts (this machine) stay in the test's directory.
            "vars": {
                "ansible_become": False,
                "loginapp_lock_file": str(Path(directory) / "deploy.lock"),
                "loginapp_audit_log": str(Path(directory) / "audit.log"),
                **(group_vars or {}),
            },
            "children": {managers_group: {"hosts": hosts(managers)}, workers_group: {"hosts": hosts(workers)}},
        }
    }
    path = Path(directory) / "hosts.yml"
    path.write_text(json.dumps(inventory))
    return path
