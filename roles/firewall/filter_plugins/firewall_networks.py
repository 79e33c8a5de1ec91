"""Addresses and networks for the firewall's nftables sets, split by IP version."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def firewall_networks(values: list, strict: bool = True) -> list:
    """The networks ``values`` cover, merged (nftables refuses overlapping intervals), IPv4 first; a single
    address is written without its /32 or /128. ``strict``: a value that is no address or network fails, naming
    it; else it is left out (host names, empty strings)."""
    by_version = {4: [], 6: []}
    for value in values:
        try:
            network = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            if strict:
                raise AnsibleFilterError(f"{value!r} is not an IP address or network (CIDR)") from None
            continue
        by_version[network.version].append(network)
    merged = [n for version in (4, 6) for n in ipaddress.collapse_addresses(by_version[version])]
    return [str(n.network_address) if n.num_addresses == 1 else str(n) for n in merged]


def firewall_of_version(networks: list, version: int) -> list:
    """The networks of one IP version (4 or 6)."""
    return [n for n in networks if ipaddress.ip_network(n).version == int(version)]


def firewall_invalid(values: list) -> list:
    """The values that are no IP address or network."""
    return [value for value in values if not firewall_networks([value], strict=False)]


class FilterModule:
    def filters(self):
        return {
            "firewall_networks": firewall_networks,
            "firewall_of_version": firewall_of_version,
            "firewall_invalid": firewall_invalid,
        }
