"""Where a deployment is and what it is made of, read from its inventory, never copied.

* ``settings(inventory)``: the shared settings (roles/loginapp) as that
  inventory resolves them;
* ``Target``: a deployment as the controller reaches it: inventory, public
  address, CA (the tls stage's output), and the Docker CLI of its first manager
  (``docker exec`` into a Molecule test host, or this machine's own); it runs
  playbooks against the deployment and reads its services.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from . import REPO
from .client import Client, ssl_context
from .load import LoadGenerator
from .playbook import PlaybookRun, run_playbook

# Tests and benchmarks against this machine POST to /login and /register from one address far more
# often than nginx's default 10/min allows, and wrk holds 200 requests in progress from it. One value
# for both, so switching between them never changes nginx's config (which would restart it).
RELAXED_RATE_LIMIT = {
    "stack_nginx_login_rate": "100r/s",
    "stack_nginx_login_burst": 1000,
    "stack_nginx_client_requests": 0,
}


@cache
def settings(inventory: str) -> dict:
    """Shared settings resolved for ``inventory`` (runs tests/kit/loginapp_kit/settings.yml)."""
    run = run_playbook(Path(__file__).with_name("settings.yml"), inventory, json_output=True, timeout=120)
    if not run.ok:
        raise RuntimeError(f"could not read the shared settings of {inventory}:\n{run.output[-2000:]}")
    (host_result,) = run.json()["plays"][0]["tasks"][-1]["hosts"].values()
    return host_result["msg"]


def default_ipv4() -> str:
    """This machine's default-route source address (what the smoke test uses for a local deployment)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("1.1.1.1", 53))  # no packet is sent
        return probe.getsockname()[0]


@dataclass
class Target:
    """A deployment: its inventory, the address clients use, and the first manager's Docker CLI."""

    inventory: Path
    host: str
    # Nodes are Molecule test hosts (containers on this engine), reached with `docker exec`;
    # else the deployment is this machine.
    containers: bool = False
    # Variables added to every playbook run against it (e.g. a relaxed rate limit).
    extra_vars: dict = field(default_factory=dict)

    @classmethod
    def local(cls, **kwargs) -> Target:
        """This machine's deployment (inventory/local), with the relaxed rate limit on every run."""
        kwargs.setdefault("extra_vars", dict(RELAXED_RATE_LIMIT))
        return cls(REPO / "inventory" / "local", os.environ.get("LOGINAPP_HOST") or default_ipv4(), **kwargs)

    @classmethod
    def molecule(cls, inventory: str | None = None, **kwargs) -> Target:
        """The first manager of a Molecule scenario: a container on this engine, reached by its address."""
        inventory = Path(inventory or os.environ["MOLECULE_INVENTORY_FILE"])
        first = settings(str(inventory))["loginapp_first_manager"]
        route = subprocess.run(
            ["docker", "exec", first, "ip", "-4", "-o", "route", "get", "1.1.1.1"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        host = re.search(r"\bsrc (\S+)", route).group(1)
        return cls(inventory, host, containers=True, **kwargs)

    @classmethod
    def from_environment(cls, **kwargs) -> Target:
        """A Molecule scenario's when pytest runs as its verifier, else this machine's."""
        return cls.molecule(**kwargs) if os.environ.get("MOLECULE_INVENTORY_FILE") else cls.local(**kwargs)

    @property
    def settings(self) -> dict:
        return settings(str(self.inventory))

    @property
    def stack(self) -> str:
        return self.settings["loginapp_stack_name"]

    def outputs(self, stage: str) -> dict:
        """What a stage published for later stages (roles/loginapp/tasks/publish_outputs.yml)."""
        path = self.state_dir / "outputs" / f"{stage}.json"
        return json.loads(path.read_text())

    @property
    def state_dir(self) -> Path:
        return Path(self.settings["loginapp_state_dir"])

    @property
    def ca_cert(self) -> Path:
        return Path(self.outputs("tls")["tls_ca_cert_path"])

    @property
    def base_url(self) -> str:
        return f"https://{self.host}"

    def client(self, host: str | None = None, timeout: float = 30) -> Client:
        """A new browser for this deployment (through ``host``'s nginx when given)."""
        return Client(f"https://{host or self.host}", ssl_context(self.ca_cert), timeout=timeout)

    def ssl_context(self):
        return ssl_context(self.ca_cert)

    def load(self, workers: int = 6, host: str | None = None, **options) -> LoadGenerator:
        """Steady HTTPS traffic (through ``host``'s nginx when given) that counts every lost request."""
        return LoadGenerator(host or self.host, self.ssl_context(), workers=workers, **options)

    def controller_address(self) -> str:
        """The controller's source address towards the site: the client IP nginx sees."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((self.host, 443))  # no packet is sent; this only picks the route
            return probe.getsockname()[0]

    def run_playbook(self, playbook: str, *args: str, log: Path | None = None, **extra_vars) -> PlaybookRun:
        """A playbook of the repository against this deployment, with its extra variables."""
        return run_playbook(playbook, self.inventory, {**self.extra_vars, **extra_vars}, *args, log=log)

    def logs_command(self, *args: str) -> list[str]:
        """`make logs` (bin/loginapp-logs) against this deployment, with ``args``."""
        return [str(REPO / "bin" / "loginapp-logs"), "-i", str(self.inventory), *args]

    # --- commands on the nodes ---------------------------------------------------------

    def run_on(self, node: str, *argv: str, check: bool = True, timeout: float = 300) -> str:
        """Run ``argv`` on ``node`` (an inventory name); stdout, stripped. RuntimeError when it fails and ``check``."""
        prefix = ["docker", "exec", node] if self.containers else []
        result = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} on {node} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip()

    def docker(self, *args: str, node: str | None = None, check: bool = True, timeout: float = 300) -> str:
        """`docker ARGS` on ``node``, by default the first manager (where the stack is inspected)."""
        return self.run_on(
            node or self.settings["loginapp_first_manager"], "docker", *args, check=check, timeout=timeout
        )

    def node_address(self, node: str) -> str:
        """The node's address on its network (eth0), as other nodes and the controller reach it."""
        return self.run_on(node, "ip", "-4", "-o", "addr", "show", "eth0").split()[3].split("/")[0]

    def service(self, name: str) -> str:
        return f"{self.stack}_{name}"

    def service_spec(self, name: str) -> dict:
        return json.loads(self.docker("service", "inspect", self.service(name)))[0]["Spec"]

    def service_image(self, name: str) -> str:
        """Image (without digest) that the service's spec asks for."""
        return self.service_spec(name)["TaskTemplate"]["ContainerSpec"]["Image"].split("@", 1)[0]

    def running_tasks(self, name: str) -> list[tuple[str, str, str]]:
        """(task name, node, image) of the service's tasks that are running now."""
        out = self.docker(
            "service", "ps", self.service(name), "--filter", "desired-state=running",
            "--format", "{{.Name}}|{{.Node}}|{{.Image}}|{{.CurrentState}}",
        )  # fmt: skip
        rows = [line.split("|") for line in out.splitlines() if line]
        return [
            (task, node, image.split("@", 1)[0]) for task, node, image, state in rows if state.startswith("Running")
        ]

    def container(self, name: str, node: str | None = None) -> str:
        """ID of one running container of the service on ``node``, by default the first manager."""
        ids = self.docker(
            "ps", "-q", "--filter", "status=running",
            "--filter", f"label=com.docker.swarm.service.name={self.service(name)}", node=node,
        ).split()  # fmt: skip
        if not ids:
            raise AssertionError(f"no running container of {self.service(name)} on {node or 'the first manager'}")
        return ids[0]

    def app_replicas(self) -> dict[str, str]:
        """The app's running tasks as {address:port on the backend network: node}, as nginx's upstream names them."""
        port, backend = self.settings["loginapp_app_port"], f"{self.stack}_backend"
        listed = self.docker(
            "service", "ps", self.service("app"), "--filter", "desired-state=running", "-q", "--no-trunc"
        ).split()
        if not listed:
            return {}
        # One inspect for all the tasks and one for their nodes, not one per task.
        tasks = [t for t in json.loads(self.docker("inspect", *listed)) if t["Status"]["State"] == "running"]
        if not tasks:
            return {}
        nodes = self.docker(
            "node", "inspect", "--format", "{{.ID}} {{.Description.Hostname}}", *{t["NodeID"] for t in tasks}
        )
        hostname = dict(line.split() for line in nodes.splitlines())
        return {
            f"{address.split('/')[0]}:{port}": hostname[task["NodeID"]]
            for task in tasks
            for network in task.get("NetworksAttachments") or []
            if network["Network"]["Spec"]["Name"] == backend
            for address in network["Addresses"]
        }

    def passes_health_check(self, name: str) -> bool:
        """One running container of the service passes its own health check now (the app's asks /readyz).

        Readiness is not served to the internet: this runs the image's check inside the container.
        """
        container = self.container(name)
        test = json.loads(self.docker("inspect", "--format", "{{json .Config.Healthcheck.Test}}", container))
        assert test and test[0] == "CMD", f"{self.service(name)} has no CMD health check: {test}"
        try:
            self.docker("exec", container, *test[1:], timeout=30)
        except RuntimeError:
            return False
        return True

    def running_images(self, name: str) -> set[str]:
        return {image for _, _, image in self.running_tasks(name)}

    def converged(self, name: str) -> bool:
        """The service runs all its replicas and no update is in progress."""
        spec = json.loads(self.docker("service", "inspect", self.service(name)))[0]
        desired = spec["Spec"]["Mode"].get("Replicated", {}).get("Replicas")
        state = (spec.get("UpdateStatus") or {}).get("State", "")
        return bool(desired) and len(self.running_tasks(name)) == desired and state in ("", "completed")

    def remove_stack_and_volume(self, timeout: float = 180) -> None:
        """`docker stack rm`, wait until its containers and network are gone, then drop the db volume."""
        self.docker("stack", "rm", self.stack, check=False)
        label = f"label=com.docker.stack.namespace={self.stack}"
        deadline = time.monotonic() + timeout
        while self.docker("ps", "-aq", "--filter", label, check=False) or self.docker(
            "network", "ls", "-q", "--filter", label, check=False
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("stack containers still present after docker stack rm")
            time.sleep(2)
        # The volume can stay busy for a moment after the container is gone.
        while True:
            try:
                self.docker(
                    "volume", "rm", "--force", self.service("db-data"), node=self.settings["loginapp_db_hosts"][0]
                )
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(2)
