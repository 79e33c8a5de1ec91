"""Cluster figures for `make bench`: cold vs warm site.yml on a bare host, and requests lost when a node dies.

Run from the repository root:  python bench/cluster_bench.py   (or `make bench`; about 15 minutes)

* Cold vs warm: the Molecule `default` scenario's host is a bare Debian 13
  container. The bench creates it, times `site.yml` on it (the cold run:
  Docker, swarm, base image by debootstrap, three image builds, the stack),
  then times it again with nothing to change (the warm run), and destroys it.
* Node loss: `molecule test -s swarm` deploys the stack on three managers and
  a worker; its node-loss test stops the engine of a node running app
  replicas while steady traffic goes through another node's nginx, and writes
  what it saw to build/artifacts/swarm-node-loss.json, read back here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NODE_LOSS_FIGURES = REPO / "build" / "artifacts" / "swarm-node-loss.json"


def run(*command: str) -> float:
    """Run a command from the repository root, its output streamed; return its duration in seconds."""
    print(f"\n$ {' '.join(command)}", flush=True)
    start = time.monotonic()
    subprocess.run(command, cwd=REPO, check=True)
    return time.monotonic() - start


def cold_and_warm() -> tuple[float, float]:
    run("molecule", "destroy", "-s", "default")
    run("molecule", "create", "-s", "default")
    run("molecule", "prepare", "-s", "default")
    try:
        return run("molecule", "converge", "-s", "default"), run("molecule", "converge", "-s", "default")
    finally:
        run("molecule", "destroy", "-s", "default")


def node_loss() -> dict:
    NODE_LOSS_FIGURES.unlink(missing_ok=True)
    run("molecule", "test", "-s", "swarm")
    return json.loads(NODE_LOSS_FIGURES.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-node-loss", action="store_true", help="only the cold/warm site.yml figures")
    args = parser.parse_args()

    run("ansible-playbook", "molecule/resources/testhosts.yml")
    cold, warm = cold_and_warm()
    loss = None if args.skip_node_loss else node_loss()

    print("\nloginapp cluster benchmark (this machine, one run)")
    print(f"{'figure':52} {'value':>12}")
    print("-" * 65)
    print(f"{'site.yml on a bare host (cold), s':52} {cold:12.0f}")
    print(f"{'site.yml again, nothing to change (warm), s':52} {warm:12.0f}")
    print(f"{'cold / warm':52} {cold / warm:11.1f}x")
    if loss:
        print(f"{'node lost: ' + loss['victim'] + ' (traffic via ' + loss['edge'] + ')':52} {'':>12}")
        print(f"{'  requests sent during the failover':52} {loss['requests']:12d}")
        print(f"{'  requests lost':52} {loss['errors']:12d}")
        print(f"{'  seconds until Swarm marked the node down':52} {loss['seconds_to_node_down']:12.1f}")
        print(f"{'  seconds until all app replicas ran again':52} {loss['seconds_to_full_replicas']:12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
