"""The stack role's port_holders module (roles/stack/library): who listens on the published ports."""

import importlib.util
import os
import socket

from loginapp_kit import REPO

SPEC = importlib.util.spec_from_file_location("port_holders", REPO / "roles/stack/library/port_holders.py")
port_holders = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(port_holders)


def test_names_the_process_that_listens():
    """Its own fds come and go while it scans (os.listdir opens one): that must not hide the process."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_holders.holders({port}) == {port: [f"{port_holders_name()} (pid {os.getpid()})"]}


def test_a_listener_replaced_during_the_scan_is_looked_up_again(monkeypatch):
    """The first table names a socket that closed before the scan; the table read after it names its successor."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        real = port_holders.listening_inodes({port})
        tables = [{"1": port}, real]
        monkeypatch.setattr(port_holders, "listening_inodes", lambda ports: tables.pop(0) if len(tables) > 1 else real)
        assert port_holders.holders({port}) == {port: [f"{port_holders_name()} (pid {os.getpid()})"]}


def test_a_socket_nobody_holds_is_an_unknown_process(monkeypatch):
    monkeypatch.setattr(port_holders, "listening_inodes", lambda ports: {"1": 8443})
    assert port_holders.holders({8443}) == {8443: ["an unknown process"]}


def port_holders_name():
    with open("/proc/self/comm") as comm:
        return comm.read().strip()
