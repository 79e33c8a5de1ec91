"""How long day-2 deploys take on this machine, and what they cost users.

Run from the repository root:  python bench/deploy_bench.py   (or `make bench`)

Against the deployment on this machine (inventory/local, deployed first if
needed), each row is one real playbook run, timed from start to return, with
steady HTTPS traffic (the kit's LoadGenerator) counting every failed request:

* warm site.yml: nothing to change;
* app update: site.yml with a copy of app/ whose image tag differs (one
  template comment), so a new image is built and every replica replaced;
* scale up / down: playbooks/stack.yml with stack_app_replicas one higher,
  then back;
* nginx setting: playbooks/stack.yml with another keepalive timeout, then back.

The stack ends as it started (site.yml with the repository's app/). The
4-node figures (cold and warm site.yml, node loss) are bench/cluster_bench.py's.
About 6 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from loginapp_kit.apptree import copy_app_tree
from loginapp_kit.deployment import Target

LOAD_WORKERS = 6


def timed(target: Target, workdir: Path, name: str, playbook: str, **extra) -> tuple[float, int, int, str]:
    """Run one playbook under load: (seconds, requests ok, requests failed, changed tasks)."""
    with target.load(LOAD_WORKERS) as load:
        time.sleep(1)
        run = target.run_playbook(playbook, log=workdir / f"{name}.log", **extra)
    if not run.ok:
        print(run.tail(60), file=sys.stderr)
        raise SystemExit(f"{name}: {playbook} failed (log {workdir / name}.log)")
    print(f"  {name}: {run.duration:.1f} s, changed={run.changed}, lost {load.failed} of {load.total}", flush=True)
    return run.duration, load.ok, load.failed, str(run.changed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the playbook logs (printed path)")
    args = parser.parse_args(argv)
    target = Target.local()
    workdir = Path(tempfile.mkdtemp(prefix="loginapp-deploy-bench-"))
    print(f"Deploying/checking the stack (site.yml, inventory {target.inventory}); logs in {workdir}", flush=True)
    first = target.run_playbook("site.yml", log=workdir / "deploy.log")
    if not first.ok:
        print(first.tail(80), file=sys.stderr)
        return 1
    replicas = int(target.service_spec("app")["Mode"]["Replicated"]["Replicas"])
    keepalive = "31s"
    rows = [
        ("warm site.yml (nothing to change)", timed(target, workdir, "warm", "site.yml")),
        ("app update (new image, all replicas)", timed(
            target, workdir, "update", "site.yml",
            images_app_dir=str(copy_app_tree(workdir / "app-next", f"deploy bench {time.time()}")))),
        ("app back to the repository's app/", timed(target, workdir, "update-back", "site.yml")),
        (f"scale app {replicas} -> {replicas + 1}", timed(
            target, workdir, "scale-up", "playbooks/stack.yml", stack_app_replicas=replicas + 1)),
        (f"scale app {replicas + 1} -> {replicas}", timed(
            target, workdir, "scale-down", "playbooks/stack.yml", stack_app_replicas=replicas)),
        (f"nginx setting (keepalive {keepalive})", timed(
            target, workdir, "nginx", "playbooks/stack.yml", stack_nginx_keepalive_timeout=keepalive)),
        ("nginx setting back", timed(target, workdir, "nginx-back", "playbooks/stack.yml")),
    ]  # fmt: skip

    cpus = len(os.sched_getaffinity(0))
    print(f"\nloginapp deploy benchmark: one node, {cpus} CPUs (load {os.getloadavg()[0]:.1f}), "
          f"{replicas} app replicas, {LOAD_WORKERS} HTTPS clients during each run")  # fmt: skip
    header = f"{'change':40} {'playbook returned':>17} {'changed':>8} {'requests ok':>12} {'failed':>7}"
    print(header)
    print("-" * len(header))
    for name, (seconds, ok, failed, changed) in rows:
        print(f"{name:40} {seconds:15.1f} s {changed:>8} {ok:12d} {failed:7d}")
    if not args.keep:
        for log in workdir.rglob("*"):
            if log.is_file():
                log.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
