"""The test kit itself: recap and h2load parsing, HTML forms, load counting, app tree copies."""

import json
import socket
import ssl
import subprocess
import sys
import time

import pytest
from loginapp_kit import REPO, h2load, html
from loginapp_kit.apptree import copy_app_tree
from loginapp_kit.load import LoadGenerator
from loginapp_kit.playbook import changed_tasks, play_recap

RECAP = """
TASK [Deploy the stack] ****
changed: [localhost]

TASK [Wait] ****
ok: [localhost]

PLAY RECAP *********************************************************************
localhost                  : ok=86   changed=1    unreachable=0    failed=0    skipped=3    rescued=0    ignored=0
node2                      : ok=10   changed=0    unreachable=1    failed=2    skipped=0    rescued=0    ignored=0
"""

PAGE = """<header><form method="post" action="/logout"><input type="hidden" name="csrf_token" value="t-logout">
<button>Log out</button></form></header>
<main><form method="post" action="/login" novalidate>
<input id="csrf_token" name="csrf_token" type="hidden" value="t-login">
<input id="username" name="username" type="text" value=""></form></main>"""


def test_play_recap_and_changed_tasks():
    assert play_recap(RECAP) == {
        "localhost": {"ok": 86, "changed": 1, "unreachable": 0, "failed": 0},
        "node2": {"ok": 10, "changed": 0, "unreachable": 1, "failed": 2},
    }
    assert changed_tasks(RECAP) == ["Deploy the stack"]


# h2load 1.52's report of a run in which nginx closed the connections after 1000 requests each.
H2LOAD_REPORT = """TLS Protocol: TLSv1.3
Application protocol: h2

finished in 425.12ms, 28227.30 req/s, 79.44MB/s
requests: 12000 total, 12000 started, 12000 done, 9969 succeeded, 2031 failed, 2000 errored, 0 timeout
status codes: 9969 2xx, 0 3xx, 30 4xx, 1 5xx
"""


def test_h2load_report_counts_only_good_answers():
    result = h2load.parse(H2LOAD_REPORT)
    assert (result.succeeded, result.errors, result.protocol) == (9969, 2031, "h2")
    assert result.rps == pytest.approx(9969 / (12000 / 28227.30))
    assert (result + result).rps == pytest.approx(result.rps)
    with pytest.raises(ValueError, match="not an h2load report"):
        h2load.parse("TLS Protocol: TLSv1.3\n")


def test_forms_and_csrf_tokens():
    assert [f.action for f in html.forms(PAGE)] == ["/logout", "/login"]
    assert html.csrf_token(PAGE) == "t-login"  # the last form: the page's own
    assert html.csrf_token(PAGE, "/logout") == "t-logout"
    assert html.form(PAGE, "/login").fields == {"csrf_token": "t-login", "username": ""}
    with pytest.raises(AssertionError, match="no form posting to /register"):
        html.form(PAGE, "/register")


def app_tag(app_dir):
    uids = json.dumps({"app": 10001, "nginx": 33, "db": 999})
    out = subprocess.run(
        [sys.executable, str(REPO / "roles/images/files/content_hash.py"), str(app_dir),
         str(REPO / "roles/images/files/nginx"), str(REPO / "roles/images/files/db"), "base", "3.11", "x86_64", uids],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)["app"]


def test_copied_tree_gets_a_new_tag_and_broken_one_fails_at_start(tmp_path):
    good = copy_app_tree(tmp_path / "good", "marker one")
    broken = copy_app_tree(tmp_path / "broken", "marker two", broken=True)
    tags = {app_tag(REPO / "app"), app_tag(good), app_tag(broken)}
    assert len(tags) == 3
    assert "marker one" in (good / "loginapp/templates/base.html").read_text()
    assert "exit 1" in (broken / "docker-entrypoint.sh").read_text()
    assert "exit 1" not in (good / "docker-entrypoint.sh").read_text()


def test_load_generator_counts_refused_connections():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        load = LoadGenerator("127.0.0.1", ssl.create_default_context(), workers=2, port=port)
        with load:
            time.sleep(0.5)
    assert load.ok == 0
    assert load.failed > 0
    assert set(load.errors) == {"ConnectionRefusedError"}
