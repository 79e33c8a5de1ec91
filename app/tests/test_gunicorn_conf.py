"""Worker sizing in gunicorn.conf.py from cgroup limits and CPU affinity."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

CONF = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"


def load_conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gunicorn_conf", CONF)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    conf = load_conf()
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert conf._cgroup_cpu_limit(tmp_path) == 1.5
    assert conf.available_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert conf._cgroup_cpu_limit(tmp_path) is None
    assert conf.available_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    conf = load_conf()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert conf._cgroup_cpu_limit(tmp_path) == 0.5
    assert conf.available_cpus(tmp_path) == 1  # never fewer than one
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert conf._cgroup_cpu_limit(tmp_path) is None


def test_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_conf()
    assert conf.workers == 2 * conf.available_cpus() + 1
    assert conf.bind == "0.0.0.0:8000"
    assert conf.worker_tmp_dir in {"/dev/shm", "/tmp"}
    assert conf.graceful_timeout < 30
    monkeypatch.setenv("LOGINAPP_WORKERS", "7")
    monkeypatch.setenv("LOGINAPP_BIND", "127.0.0.1:9000")
    conf = load_conf()
    assert conf.workers == 7
    assert conf.bind == "127.0.0.1:9000"
