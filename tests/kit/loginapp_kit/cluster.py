"""A multi-node swarm seen from outside: node states, and losing a node under traffic.

Used by the swarm scenario's tests and by ``bench/cluster_bench.py``, which
both measure a node loss the same way: stop the Docker engine of a node that
runs app replicas while steady HTTPS traffic goes through another node's
nginx, and count what the traffic lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .deployment import Target
from .wait import wait_for

ENGINE_UNITS = ("docker.socket", "docker.service")


def nodes(target: Target, via: str | None = None) -> dict[str, dict[str, str]]:
    """Hostname -> {status, availability, manager} as `docker node ls` on ``via`` (a manager) reports it."""
    out = target.docker(
        "node", "ls", "--format", "{{.Hostname}}|{{.Status}}|{{.Availability}}|{{.ManagerStatus}}", node=via
    )
    listed = {}
    for line in out.splitlines():
        name, status, availability, manager = line.split("|")
        listed[name] = {"status": status, "availability": availability, "manager": manager}
    return listed


def at_full_strength(target: Target, via: str | None = None) -> bool:
    """Every inventory host is a Ready node; the managers are one Leader and Reachable others."""
    listed = nodes(target, via)
    managers = target.settings["loginapp_managers"]
    everyone = managers + target.settings["loginapp_workers"]
    return (
        sorted(listed) == sorted(everyone)
        and {n["status"] for n in listed.values()} == {"Ready"}
        and sorted(listed[m]["manager"] for m in managers) == sorted(["Leader"] + ["Reachable"] * (len(managers) - 1))
    )


def wait_for_full_strength(target: Target, timeout: float = 180, via: str | None = None) -> bool:
    """Bounded wait after a fault: a manager without quorum refusing commands counts as not yet."""
    return bool(wait_for(lambda: at_full_strength(target, via), timeout, errors=(RuntimeError,)))


def stop_engine(target: Target, node: str) -> None:
    target.run_on(node, "systemctl", "stop", *ENGINE_UNITS)


def start_engine(target: Target, node: str) -> None:
    target.run_on(node, "systemctl", "start", *ENGINE_UNITS)


def pick_victim(target: Target) -> str:
    """A node running app replicas that is neither the leader, the first manager nor a database host; workers first."""
    placed = [node for _, node, _ in target.running_tasks("app")]
    leader = next(name for name, n in nodes(target).items() if n["manager"] == "Leader")
    keep = {leader, target.settings["loginapp_first_manager"], *target.settings["loginapp_db_hosts"]}
    candidates = target.settings["loginapp_workers"] + target.settings["loginapp_managers"]
    victim = next((name for name in candidates if name in placed and name not in keep), None)
    if not victim:
        raise RuntimeError(f"no app replica on a node that may be stopped: {placed} (kept: {sorted(keep)})")
    return victim


@dataclass
class NodeLoss:
    """What a node loss under traffic looked like."""

    victim: str
    edge: str
    app_tasks_lost: int
    seconds_to_node_down: float | None = None
    seconds_to_full_replicas: float | None = None
    seconds_to_ready_again: float | None = None
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)


def lose_node(target: Target, victim: str, edge: str, timeout: float = 150, rejoin_timeout: float = 90) -> NodeLoss:
    """Stop ``victim``'s engine under steady traffic through ``edge``; wait for recovery, restart it, wait for it.

    Always restarts the victim and waits (bounded) until it is Ready again,
    so whatever runs next finds the whole cluster. The victim must not be the
    first manager (where the cluster is watched from): see ``pick_victim``.
    """
    if victim == target.settings["loginapp_first_manager"]:
        raise ValueError(f"{victim} is the first manager, from which the loss is watched")
    replicas = target.service_spec("app")["Mode"]["Replicated"]["Replicas"]
    placed = [node for _, node, _ in target.running_tasks("app")]
    loss = NodeLoss(victim=victim, edge=edge, app_tasks_lost=placed.count(victim))
    address = target.node_address(edge)
    # Four threads, about 10 requests/s in all, through the edge that stays up.
    with target.load(workers=4, host=address, paths=("/login",), pause=0.4) as load:
        time.sleep(3)  # a baseline before the loss
        stop_engine(target, victim)
        stopped = time.monotonic()
        try:
            if wait_for(lambda: nodes(target)[victim]["status"] == "Down", timeout, 1, errors=(RuntimeError,)):
                loss.seconds_to_node_down = round(time.monotonic() - stopped, 1)
            if wait_for(
                lambda: len([n for _, n, _ in target.running_tasks("app") if n != victim]) == replicas,
                timeout, 1, errors=(RuntimeError,),
            ):  # fmt: skip
                loss.seconds_to_full_replicas = round(time.monotonic() - stopped, 1)
            time.sleep(5)  # traffic on the recovered service, too
        finally:
            start_engine(target, victim)
    restarted = time.monotonic()
    if wait_for(lambda: nodes(target)[victim]["status"] == "Ready", rejoin_timeout, errors=(RuntimeError,)):
        loss.seconds_to_ready_again = round(time.monotonic() - restarted, 1)
    loss.requests, loss.errors, loss.error_samples = load.total, load.failed, load.error_log
    return loss
