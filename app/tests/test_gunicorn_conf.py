"""gunicorn.conf.py: Gunicorn's settings from the table in loginapp.config.

Worker sizing from cgroup limits and CPU affinity, LOGINAPP_PORT/WORKERS (also
as *_FILE) reaching Gunicorn itself, a bad value ending it with one line, and
the app preloaded in the master, which brings the schema to head before it
listens and must leave no database connection open for its workers.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from loginapp_kit.pgserver import free_port

from loginapp import create_app
from loginapp.config import _cgroup_cpu_limit, available_cpus
from loginapp.db import get_engine

CONF = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"
GUNICORN = Path(sys.executable).with_name("gunicorn")
SECRET_KEY = "x7" * 32
# Nothing listens on port 1.
NOBODY_LISTENS = "postgresql+psycopg://loginapp@127.0.0.1:1/loginapp"


def load_conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gunicorn_conf", CONF)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gunicorn_env(**settings: str) -> dict[str, str]:
    """This process's environment without its LOGINAPP_* variables, plus `settings`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LOGINAPP_")}, **settings}


def run_gunicorn(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Gunicorn with the app's config file, printing its resolved settings and exiting."""
    # --print-config loads the app too; keep its database out of the source tree.
    env = gunicorn_env(LOGINAPP_DATABASE_URL=f"sqlite:///{tmp_path}/print-config.sqlite3", **env)
    command = [str(GUNICORN), "--config", str(CONF), "--print-config", "loginapp:create_app()"]
    return subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )


def printed(stdout: str, option: str) -> str:
    """The value Gunicorn's --print-config shows for an option."""
    values = [
        line.split("=", 1)[1].strip()
        for line in stdout.splitlines()
        if line.split("=", 1)[0].strip() == option
    ]
    assert len(values) == 1, stdout
    return values[0]


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_limit(tmp_path) == 1.5
    assert available_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_limit(tmp_path) is None
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_cpu_limit(tmp_path) == 0.5
    assert available_cpus(tmp_path) == 1  # never fewer than one
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_cpu_limit(tmp_path) is None


def test_defaults() -> None:
    conf = load_conf()
    assert conf.workers == 2 * available_cpus() + 1
    assert conf.bind == ["0.0.0.0:8000"]
    assert conf.worker_tmp_dir in {"/dev/shm", "/tmp"}
    assert conf.graceful_timeout < 30
    assert conf.max_requests_jitter == conf.max_requests // 10


def test_port_and_workers_from_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGINAPP_WORKERS", "7")
    monkeypatch.setenv("LOGINAPP_PORT", "9000")
    monkeypatch.setenv("LOGINAPP_LISTEN_ADDRESS", "127.0.0.1")
    conf = load_conf()
    assert conf.workers == 7
    assert conf.bind == ["127.0.0.1:9000"]


def test_port_and_workers_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "workers").write_text("3\n")
    (tmp_path / "port").write_text("9001\n")
    monkeypatch.setenv("LOGINAPP_WORKERS_FILE", str(tmp_path / "workers"))
    monkeypatch.setenv("LOGINAPP_PORT_FILE", str(tmp_path / "port"))
    conf = load_conf()
    assert conf.workers == 3
    assert conf.bind == ["0.0.0.0:9001"]


def test_bad_value_exits_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGINAPP_PORT", "http")
    with pytest.raises(SystemExit) as exit_info:
        load_conf()
    assert exit_info.value.code == "loginapp: LOGINAPP_PORT must be an integer, not 'http'."


def test_gunicorn_reads_port_and_workers(tmp_path: Path) -> None:
    (tmp_path / "port").write_text("9123\n")
    result = run_gunicorn(
        {"LOGINAPP_PORT_FILE": str(tmp_path / "port"), "LOGINAPP_WORKERS": "6"}, tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert printed(result.stdout, "bind") == "['0.0.0.0:9123']"
    assert printed(result.stdout, "workers") == "6"
    assert printed(result.stdout, "worker_class") == "gthread"


MISSING = "/nonexistent/port"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOGINAPP_WORKERS": "many"}, "LOGINAPP_WORKERS must be an integer, not 'many'."),
        ({"LOGINAPP_PORT": "70000"}, "LOGINAPP_PORT must be at most 65535."),
        (
            {"LOGINAPP_PORT_FILE": MISSING},
            f"LOGINAPP_PORT_FILE names {MISSING!r}, which cannot be read: "
            f"[Errno 2] No such file or directory: {MISSING!r}",
        ),
    ],
)
def test_gunicorn_fails_clearly_on_a_bad_value(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = run_gunicorn(env, tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"loginapp: {message}\n"
    assert result.stdout == ""


def test_the_app_opens_no_database_connection_before_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Gunicorn forks its workers from the app the master loaded (preload_app):
    a connection opened then would be one socket shared by every worker."""
    assert load_conf().preload_app is True
    monkeypatch.setenv("LOGINAPP_SECRET_KEY", SECRET_KEY)
    # Any connection attempt would fail here.
    monkeypatch.setenv("LOGINAPP_DATABASE_URL", NOBODY_LISTENS)
    app = create_app()
    with app.app_context():
        pool = get_engine().pool
        assert (pool.checkedin(), pool.checkedout()) == (0, 0)


def test_the_master_migrates_then_its_workers_serve(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/app.sqlite3"
    port = free_port()
    env = gunicorn_env(
        LOGINAPP_SECRET_KEY=SECRET_KEY, LOGINAPP_DATABASE_URL=database,
        LOGINAPP_LISTEN_ADDRESS="127.0.0.1", LOGINAPP_PORT=str(port), LOGINAPP_WORKERS="2",
    )  # fmt: skip
    server = subprocess.Popen(
        [str(GUNICORN), "--config", str(CONF), "loginapp:create_app()"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        statuses = []
        deadline = time.monotonic() + 60
        while len(statuses) < 20 and time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/readyz")
                statuses.append(connection.getresponse().status)
                connection.close()
            except OSError:
                time.sleep(0.2)
        assert statuses == [200] * 20
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Database schema upgraded from base to " in output, output
    assert "Booting worker" in output, output
    assert "Traceback" not in output, output


def test_an_unreachable_database_ends_gunicorn_with_one_line(tmp_path: Path) -> None:
    env = gunicorn_env(
        LOGINAPP_SECRET_KEY=SECRET_KEY, LOGINAPP_DATABASE_URL=NOBODY_LISTENS,
        LOGINAPP_DATABASE_WAIT="0", LOGINAPP_PORT=str(free_port()),
    )  # fmt: skip
    result = subprocess.run(
        [str(GUNICORN), "--config", str(CONF), "loginapp:create_app()"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "loginapp: The database did not accept connections within LOGINAPP_DATABASE_WAIT=0"
    ), last
    assert "Listening at" not in result.stderr, "it must not listen before the schema is current"
