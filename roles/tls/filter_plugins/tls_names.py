"""Name constraints of the private CA: which names it may sign for, and which names fall outside."""

from __future__ import annotations

import ipaddress


def _network(name: str):
    try:
        return ipaddress.ip_network(name, strict=False)
    except ValueError:
        return None


def tls_name_constraints(names: list) -> dict:
    """The CA's name constraints for community.crypto: DNS:<name> (the name and its subdomains) or IP:<network>
    permitted; an IP version with no permitted network is excluded whole, as a constraint on one type of name
    leaves the other types free (RFC 5280)."""
    permitted = []
    for name in names:
        network = _network(str(name))
        permitted.append(f"IP:{network.with_prefixlen}" if network else f"DNS:{str(name).lower().lstrip('.')}")
    versions = {network.version for network in map(_network, map(str, names)) if network}
    everything = {4: "0.0.0.0/0", 6: "::/0"}
    excluded = [f"IP:{everything[version]}" for version in (4, 6) if version not in versions]
    return {"permitted": sorted(set(permitted)), "excluded": excluded}


def _within(name: str, subtree: str) -> bool:
    kind, _, value = subtree.partition(":")
    address = _network(name) if "/" not in name else None
    if kind == "IP":
        network = ipaddress.ip_network(value)
        return address is not None and address.version == network.version and address.subnet_of(network)
    # RFC 5280: a DNS subtree holds the name itself and any name under it, label by label.
    return address is None and (name == value or name.endswith("." + value))


def tls_names_outside(names: list, subtrees: list) -> list:
    """The names (DNS names or IP addresses) that no permitted subtree holds."""
    return [name for name in names if not any(_within(str(name).lower(), str(s)) for s in subtrees)]


class FilterModule:
    def filters(self):
        return {"tls_name_constraints": tls_name_constraints, "tls_names_outside": tls_names_outside}
