"""Fixtures of the tests that run the project's playbooks on this machine, without Docker."""

import pytest
import yaml
from loginapp_kit.playbook import run_playbook as kit_run_playbook
from loginapp_kit.playbook import write_inventory


@pytest.fixture
def run_playbook(tmp_path):
    """The kit's runner, with this test's own fact cache."""

    def run(playbook, inventory, *args, extra_vars=None, **kwargs):
        return kit_run_playbook(playbook, inventory, extra_vars, *args, facts_dir=tmp_path / "facts", **kwargs)

    return run


@pytest.fixture(scope="session")
def render_templates():
    """``render_templates(directory, inventory=None, **variables)``: the stack role's templates rendered.

    Runs tests/render/templates.yml; returns (run, stack file as a dict,
    nginx.conf text), the last two None when the run failed. Without an
    inventory, one local node labelled for the database.
    """

    def render(directory, inventory=None, **extra_vars):
        directory.mkdir(parents=True, exist_ok=True)
        if inventory is None:
            db_label = {"swarm_node_labels": {"loginapp.db": "true"}}
            inventory = write_inventory(directory, host_vars={"node1": db_label})
        run = kit_run_playbook(
            "tests/render/templates.yml", inventory, {"render_dir": str(directory), **extra_vars},
            facts_dir=directory / "facts",
        )  # fmt: skip
        if not run.ok:
            return run, None, None
        return run, yaml.safe_load((directory / "stack.yml").read_text()), (directory / "nginx.conf").read_text()

    return render


@pytest.fixture
def render(render_templates, tmp_path):
    """``render(inventory=None, **variables)`` into this test's own directory."""
    return lambda inventory=None, **extra_vars: render_templates(tmp_path / "rendered", inventory, **extra_vars)


@pytest.fixture
def rotation_phase(run_playbook, tmp_path):
    """``rotation_phase(entry, phase_variable)`` -> ``run(phase, ok=True)``: one controller-side phase of a
    rotation (the stack role's ``entry`` tasks, tests/render/rotation_phase.yml) on this test's secrets
    directory, ``run.dir``; ``ok=False`` expects the phase to be refused."""

    def rotation(entry, phase_variable):
        inventory = write_inventory(tmp_path)
        secrets = tmp_path / "secrets"

        def run(phase, ok=True):
            result = run_playbook(
                "tests/render/rotation_phase.yml",
                inventory,
                extra_vars={"rotation": entry, "stack_secrets_dir": str(secrets), phase_variable: phase},
            )
            assert result.ok == ok, result.output
            return result

        run.dir = secrets
        return run

    return rotation
