"""Which Swarm secrets and configs already hold the wanted value, from one listing of what is stored.

community.docker's docker_secret / docker_config (with ``rolling_versions``)
keep versions named ``<name>_v<N>``, labelled ``ansible_version: N`` and
``ansible_key: sha224(data)``; they create a new version when the newest one's
key or labels differ. One ``docker secret|config inspect`` of every stored
version answers that for all objects at once, so the stack role calls the
modules only for the objects that change (each call costs about a second).
A mismatch only sends the object to the module, which decides as before.
"""

from __future__ import annotations

import hashlib
import re


def _version(spec: dict) -> int:
    try:
        return int((spec.get("Labels") or {}).get("ansible_version", 0))
    except ValueError:
        return 0


def stored_versions(items: list[dict], specs: list[dict], prefix: str, labels: dict) -> dict[str, str]:
    """``{key: stored name}`` for each ``{key, value}`` item whose newest stored version already holds it.

    ``specs`` are the stored objects' ``Spec`` (``docker secret inspect --format '{{json .Spec}}'``);
    an item's object is named ``<prefix>_<key>``.
    """
    unchanged = {}
    for item in items:
        pattern = re.compile(re.escape(f"{prefix}_{item['key']}") + r"_v\d+")
        versions = [spec for spec in specs if pattern.fullmatch(spec.get("Name", ""))]
        if not versions:
            continue
        newest = max(versions, key=_version)
        stored = newest.get("Labels") or {}
        wanted_key = hashlib.sha224(str(item["value"]).encode("utf-8", "surrogateescape")).hexdigest()
        if (
            stored.get("ansible_key") == wanted_key
            and not (newest.get("Templating") or {}).get("Name")
            and all(stored.get(name) == str(value) for name, value in labels.items())
        ):
            unchanged[item["key"]] = newest["Name"]
    return unchanged


class FilterModule:
    def filters(self):
        return {"stored_versions": stored_versions}
