"""The loginapp project's shared test kit, used by every test tree and by bench/.

* ``client``: a browser-like HTTPS client (cookies, CSRF, same-origin Referer, CA);
* ``html``: the forms of a page (CSRF token included), parsed once, one way;
* ``load``: steady traffic that counts every lost request;
* ``playbook``: run the repository's playbooks, read their recap;
* ``deployment``: ``settings()`` (the shared settings as Ansible resolves
  them) and ``Target`` (a deployment: inventory, outputs, nodes, services);
* ``cluster``: node states and losing a node under traffic;
* ``apptree``: copies of app/ that become new app versions;
* ``pgserver``: a throwaway PostgreSQL server (initdb + pg_ctl);
* ``appserver`` and ``wrk``: the app served locally, and wrk, for bench/;
* ``wait``: bounded polling;
* ``pytest_plugin``: fixtures (``target``, ``new_client``, ...) and the
  ``disruptive`` marker.

Installed into the project's venv (``make venv``: ``pip install -e tests/kit``),
so tests import it like any package; no ``sys.path`` edits.
"""

from pathlib import Path

# The repository this (editable) kit belongs to.
REPO = Path(__file__).resolve().parents[3]
