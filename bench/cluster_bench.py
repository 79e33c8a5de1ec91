"""Cluster figures for `make bench`: cold vs warm site.yml on a bare host, and requests lost when a node dies.

Run from the repository root:  python bench/cluster_bench.py [--skip-node-loss]   (or `make bench`; about 15 minutes)

* Cold vs warm: the Molecule `default` scenario's host is a bare Debian 13
  container. The bench creates it, times `site.yml` on it (the cold run:
  Docker, swarm, base image by debootstrap, three image builds, the stack),
  then times it again with nothing to change (the warm run), and destroys it.
* Node loss, measured here: the Molecule `swarm` scenario's four hosts (three
  managers, a worker) are created, prepared and converged (`site.yml`, also
  timed); then, with loginapp_kit.cluster.lose_node, the engine of a node
  running app replicas (neither the leader, the first manager nor the
  database host) is stopped while steady HTTPS traffic goes through another
  node's nginx, and the bench reports what the traffic lost and how long
  Swarm took to recover. The swarm hosts are always destroyed at the end.

The swarm scenario runs in an ephemeral directory of the bench's own
(MOLECULE_EPHEMERAL_DIRECTORY, a fresh temporary directory), so its inventory
is found where Molecule writes it (<ephemeral>/inventory/ansible_inventory.yml)
whatever Molecule's cache location, and no earlier run's state is reused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loginapp_kit import REPO
from loginapp_kit.cluster import NodeLoss, lose_node, nodes, pick_victim, wait_for_full_strength
from loginapp_kit.deployment import Target
from loginapp_kit.playbook import run_playbook
from loginapp_kit.wait import wait_for

BIN = Path(sys.executable).parent  # the venv's molecule and ansible-playbook


def tool_env(**extra: str) -> dict[str, str]:
    """This environment with the venv's tools first on PATH (Molecule runs ansible-playbook by name)."""
    return {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", **extra}


def run(*command: str, env: dict[str, str] | None = None, check: bool = True) -> float:
    """Run a command from the repository root, its output streamed; return its duration in seconds."""
    print(f"\n$ {' '.join(command)}", flush=True)
    start = time.monotonic()
    subprocess.run(command, cwd=REPO, env=env or tool_env(), check=check)
    return time.monotonic() - start


def molecule(step: str, scenario: str, env: dict[str, str] | None = None, check: bool = True) -> float:
    tool = BIN / "molecule"
    return run(str(tool) if tool.exists() else "molecule", step, "-s", scenario, env=env, check=check)


def build_test_hosts() -> None:
    """The test host images (cached by content: a second run builds nothing)."""
    print("\n$ ansible-playbook molecule/resources/testhosts.yml", flush=True)
    built = run_playbook("molecule/resources/testhosts.yml", REPO / "inventory" / "local", timeout=3600)
    if not built.ok:
        raise RuntimeError(f"testhosts.yml failed:\n{built.tail(80)}")
    print(f"  {built.duration:.0f} s, changed={built.changed}", flush=True)


def cold_and_warm() -> tuple[float, float]:
    molecule("destroy", "default")
    molecule("create", "default")
    molecule("prepare", "default")
    try:
        return molecule("converge", "default"), molecule("converge", "default")
    finally:
        molecule("destroy", "default")


def molecule_inventory(ephemeral: Path) -> Path:
    """The scenario's inventory file: Molecule writes it as <ephemeral>/inventory/ansible_inventory.yml."""
    inventory = ephemeral / "inventory" / "ansible_inventory.yml"
    if inventory.is_file():
        return inventory
    found = sorted(ephemeral.rglob("ansible_inventory.yml"))
    if len(found) == 1:
        return found[0]
    listing = "\n  ".join(str(p.relative_to(ephemeral)) for p in sorted(ephemeral.rglob("*"))[:50])
    raise RuntimeError(f"no Molecule inventory in {ephemeral}; it holds:\n  {listing}")


@contextmanager
def swarm_cluster() -> Iterator[tuple[Path, float]]:
    """The swarm scenario created, prepared and converged: (its inventory file, converge seconds).

    Always destroyed on exit, whatever happened.
    """
    ephemeral = Path(tempfile.mkdtemp(prefix="loginapp-bench-swarm-"))
    env = tool_env(MOLECULE_EPHEMERAL_DIRECTORY=str(ephemeral))
    previous = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    try:
        molecule("destroy", "swarm", env)  # hosts left over by an earlier run, if any
        molecule("create", "swarm", env)
        molecule("prepare", "swarm", env)
        converge = molecule("converge", "swarm", env)
        # Playbooks the kit runs on this inventory resolve its lookups as Molecule's own runs do.
        os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] = str(ephemeral)
        yield molecule_inventory(ephemeral), converge
    finally:
        if previous is None:
            os.environ.pop("MOLECULE_EPHEMERAL_DIRECTORY", None)
        else:
            os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] = previous
        try:
            molecule("destroy", "swarm", env)
        finally:
            shutil.rmtree(ephemeral, ignore_errors=True)


def node_loss() -> tuple[NodeLoss, float]:
    """Create the swarm scenario's cluster, lose a node under traffic, destroy the cluster."""
    with swarm_cluster() as (inventory, converge):
        target = Target.molecule(str(inventory))
        print(f"\nNode loss on {inventory} (site at {target.base_url}) ...", flush=True)
        if not wait_for_full_strength(target):
            raise RuntimeError(f"the cluster is not at full strength: {nodes(target)}")
        if not wait_for(lambda: target.converged("app"), 300, errors=(RuntimeError,)):
            raise RuntimeError(f"the app service did not converge: {target.running_tasks('app')}")
        victim = pick_victim(target)
        edge = next((node for _, node, _ in target.running_tasks("nginx") if node != victim), None)
        if not edge:
            raise RuntimeError(f"nginx runs only on the victim {victim}")
        print(f"  stopping the engine of {victim}, traffic through {edge}'s nginx", flush=True)
        loss = lose_node(target, victim, edge)
        if not wait_for_full_strength(target):
            print(f"warning: the cluster did not come back to full strength: {nodes(target)}", file=sys.stderr)
        return loss, converge


def seconds(value: float | None) -> str:
    return f"{value:12.1f}" if value is not None else f"{'never':>12}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-node-loss", action="store_true", help="only the cold/warm site.yml figures")
    args = parser.parse_args(argv)

    build_test_hosts()
    cold, warm = cold_and_warm()
    loss, swarm_converge = (None, 0.0) if args.skip_node_loss else node_loss()

    print("\nloginapp cluster benchmark (this machine, one run)")
    print(f"{'figure':52} {'value':>12}")
    print("-" * 65)
    print(f"{'site.yml on a bare host (cold), s':52} {cold:12.0f}")
    print(f"{'site.yml again, nothing to change (warm), s':52} {warm:12.0f}")
    print(f"{'cold / warm':52} {cold / warm:11.1f}x")
    if loss:
        print(f"{'site.yml on the bare swarm scenario hosts, s':52} {swarm_converge:12.0f}")
        print(f"{'node lost: ' + loss.victim + ' (traffic via ' + loss.edge + ')':52} {'':>12}")
        print(f"{'  app replicas it ran':52} {loss.app_tasks_lost:12d}")
        print(f"{'  requests sent during the failover':52} {loss.requests:12d}")
        print(f"{'  requests lost':52} {loss.errors:12d}")
        print(f"{'  seconds until Swarm marked the node down':52} {seconds(loss.seconds_to_node_down)}")
        print(f"{'  seconds until all app replicas ran again':52} {seconds(loss.seconds_to_full_replicas)}")
        print(f"{'  seconds until it was Ready again once restarted':52} {seconds(loss.seconds_to_ready_again)}")
        for sample in loss.error_samples:
            print(f"    {sample}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
