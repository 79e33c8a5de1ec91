"""New app versions for rollout tests: copies of app/ that hash to a new image tag."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import REPO


def copy_app_tree(destination: Path, marker: str, broken: bool = False) -> Path:
    """A copy of app/ whose image tag differs from app/'s.

    ``marker`` is appended to the base template as a Jinja comment (renders
    nothing): a template, not the stylesheet, because static files are also
    baked into the nginx image. ``broken=True`` makes the container exit
    before serving, so Swarm's health check never passes and the update is
    rolled back.
    """
    shutil.copytree(
        REPO / "app", destination,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "instance", "tests"),
        symlinks=True,
    )  # fmt: skip
    with (destination / "loginapp" / "templates" / "base.html").open("a") as out:
        out.write(f"{{# {marker} #}}\n")
    if broken:
        entry = destination / "docker-entrypoint.sh"
        text = entry.read_text()
        text = text.replace('exec "$@"', 'echo "broken build: refusing to start" >&2; sleep 5; exit 1')
        if "broken build" not in text:
            raise AssertionError(f'{entry} no longer ends with exec "$@": update copy_app_tree')
        entry.write_text(text)
    return destination
