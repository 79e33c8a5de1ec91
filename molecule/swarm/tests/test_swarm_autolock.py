"""swarm_autolock: the run that turns it on keeps the unlock key on the controller (0600, never in its output);
a manager restarted under it stays locked, out of the swarm, until the next run unlocks it with that key; turning
it off forgets the key. The test ends with autolock off and the cluster whole again."""

import stat

import pytest
from loginapp_kit.cluster import nodes, start_engine, stop_engine, wait_for_full_strength
from loginapp_kit.wait import wait_for

pytestmark = pytest.mark.disruptive

AUTOLOCK = "{{.Swarm.Cluster.Spec.EncryptionConfig.AutoLockManagers}}"


def swarm_state(target, node):
    return target.run_on(node, "docker", "info", "--format", "{{.Swarm.LocalNodeState}}")


def test_autolock_keeps_its_key_and_a_run_unlocks_a_restarted_manager(full_strength):
    target = full_strength
    settings = target.settings
    key_file = target.state_dir / "swarm" / "unlock.key"
    leader = next(name for name, n in nodes(target).items() if n["manager"] == "Leader")
    kept = {leader, settings["loginapp_first_manager"], *settings["loginapp_db_hosts"]}
    manager = next(name for name in settings["loginapp_managers"] if name not in kept)
    try:
        on = target.run_playbook("playbooks/cluster.yml", swarm_autolock=True)
        assert on.ok, on.tail()
        assert target.docker("info", "--format", AUTOLOCK) == "true"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        assert key.startswith("SWMKEY-1-") and "SWMKEY-" not in on.output

        stop_engine(target, manager)
        start_engine(target, manager)
        assert wait_for(lambda: swarm_state(target, manager) == "locked", 60, errors=(RuntimeError,)), (
            "a restarted manager under autolock should wait for its key"
        )

        unlocked = target.run_playbook("playbooks/cluster.yml", swarm_autolock=True)
        assert unlocked.ok, unlocked.tail()
        assert unlocked.says("Unlock the manager") and "SWMKEY-" not in unlocked.output
        assert swarm_state(target, manager) == "active"
        assert key_file.read_text().strip() == key, "an unchanged setting keeps the key"
        assert wait_for_full_strength(target), nodes(target)
    finally:
        off = target.run_playbook("playbooks/cluster.yml")
    assert off.ok, off.tail()
    assert target.docker("info", "--format", AUTOLOCK) == "false"
    assert not key_file.exists()
