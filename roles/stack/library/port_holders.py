#!/usr/bin/python
"""Which processes listen on given TCP ports of this host (read from /proc: no ss or netstat needed)."""

import os

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: port_holders
short_description: Name the processes listening on TCP ports
description:
  - Reads the listening sockets of the host's network namespace from /proc/net/tcp and /proc/net/tcp6,
    and finds the processes holding them through /proc/PID/fd. Changes nothing.
options:
  ports:
    description: TCP ports to look up.
    type: list
    elements: int
    required: true
"""

RETURN = r"""
holders:
  description: For each port that something listens on, the holders as "name (pid N)", or "an unknown process".
  type: dict
  returned: always
"""

LISTEN = "0A"


def listening_inodes(ports):
    """Socket inode -> port, for the LISTEN sockets on the given ports."""
    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    port = int(fields[1].rsplit(":", 1)[1], 16)
                    if fields[3] == LISTEN and port in ports:
                        inodes[fields[9]] = port
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
    return inodes


def processes_holding(inodes):
    """Socket inode -> {"name (pid N)"} for the processes holding these sockets."""
    held = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            with open(f"/proc/{pid}/comm") as comm:
                name = comm.read().strip()
        except OSError:  # the process ended, or it is not ours to read
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed since the listing: a busy process (dockerd) must not be skipped for it
                continue
            inode = target[len("socket:[") : -1] if target.startswith("socket:[") else None
            if inode in inodes:
                held.setdefault(inode, set()).add(f"{name} (pid {pid})")
    return held


def holders(ports, attempts=3):
    # A listener replaced while /proc is scanned (a container restarting: dockerd closes and reopens
    # its placeholder socket) has no holder; when the table changed meanwhile, scan it again.
    for _ in range(attempts):
        inodes = listening_inodes(ports)
        held = processes_holding(inodes)
        if all(inode in held for inode in inodes) or listening_inodes(ports) == inodes:
            break
    found = {port: set() for port in inodes.values()}
    for inode, port in inodes.items():
        found[port] |= held.get(inode, set())
    return {port: sorted(names) or ["an unknown process"] for port, names in found.items()}


def main():
    module = AnsibleModule(
        argument_spec={"ports": {"type": "list", "elements": "int", "required": True}}, supports_check_mode=True
    )
    module.exit_json(changed=False, holders=holders(set(module.params["ports"])))


if __name__ == "__main__":
    main()
