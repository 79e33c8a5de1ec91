"""The deploy lock (loginapp role, tasks/lock.yml): one run at a time per cluster, and an audit log.

The lock and the log live on the first manager; here that is this machine,
in the test's directory (the kit's inventories put them there).
"""

import getpass
import socket
import subprocess

import pytest
from loginapp_kit.playbook import write_inventory

FOREIGN = "holder=alice@elsewhere pid=4242 since=2026-12-01T10:00:00Z run=site.yml"


@pytest.fixture
def cluster(run_playbook, tmp_path):
    """``cluster.run(fails=False, **extra_vars)`` runs a locked playbook; ``.lock`` and ``.audit`` are its files."""

    class Cluster:
        inventory = write_inventory(tmp_path)
        lock = tmp_path / "deploy.lock"
        audit = tmp_path / "audit.log"

        def run(self, fails=False, **extra_vars):
            return run_playbook(
                "tests/render/locked_run.yml", self.inventory, extra_vars={"locked_run_fails": fails, **extra_vars}
            )

        def audit_lines(self):
            return self.audit.read_text().splitlines() if self.audit.exists() else []

    return Cluster()


def test_a_run_takes_the_lock_and_releases_it(cluster):
    run = cluster.run()
    assert run.ok, run.output
    assert not cluster.lock.exists(), "the lock outlived the run"
    started, finished = cluster.audit_lines()
    assert started.endswith(" started") and finished.endswith(" finished ok"), cluster.audit_lines()
    assert f"holder={getpass.getuser()}@{socket.gethostname()} pid=" in started
    assert "run=locked_run.yml" in started
    # Both lines name the same run.
    assert started.split(" ", 1)[1].removesuffix(" started") in finished


def test_a_failed_run_keeps_its_lock_and_the_next_run_here_takes_it_over(cluster):
    failed = cluster.run(fails=True)
    assert not failed.ok
    left = cluster.lock.read_text().strip()
    assert left.startswith(f"holder={getpass.getuser()}@"), left

    again = cluster.run()
    assert again.ok, again.output
    assert again.says("Took over the deploy lock"), again.output
    assert again.says("that run is no longer running"), again.output
    assert any(
        line.endswith(f"{left} ended without releasing the lock (failed or interrupted)")
        for line in cluster.audit_lines()
    )
    assert not cluster.lock.exists()


def test_another_controllers_run_refuses_this_one_until_broken(cluster):
    cluster.lock.write_text(FOREIGN + "\n")
    refused = cluster.run()
    assert not refused.ok
    for fragment in (
        "alice@elsewhere",
        "pid 4242",
        "since 2026-12-01T10:00:00Z",
        "running site.yml",
        "-e loginapp_lock_break=true",
    ):
        assert refused.says(fragment), refused.output
    assert not refused.says("The run's work"), "the work ran without the lock"
    assert cluster.lock.read_text() == FOREIGN + "\n", "a refused run touched the lock"
    assert cluster.audit_lines() == []

    broken = cluster.run(loginapp_lock_break=True)
    assert broken.ok, broken.output
    assert broken.says("broken with loginapp_lock_break"), broken.output
    assert not cluster.lock.exists()


def test_a_live_run_on_this_controller_is_not_taken_over(cluster):
    # A process that looks like a running ansible-playbook on this controller.
    with subprocess.Popen(["bash", "-c", "exec -a ansible-playbook sleep 120"]) as live:
        try:
            holder = f"{getpass.getuser()}@{socket.gethostname()}"
            cluster.lock.write_text(f"holder={holder} pid={live.pid} since=2026-12-03T05:00:00Z run=site.yml\n")
            refused = cluster.run()
        finally:
            live.kill()
    assert not refused.ok
    assert refused.says(f"pid {live.pid}"), refused.output
    assert refused.says("Another run holds the deploy lock"), refused.output
