"""Gunicorn settings for loginapp; every knob can be overridden by LOGINAPP_* variables."""

from __future__ import annotations

import os
from pathlib import Path


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs the container may use according to its cgroup quota, if one is set."""
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for base in (root / "cpu", root / "cpu,cpuacct", root):  # cgroup v1
        try:
            quota_us = int((base / "cpu.cfs_quota_us").read_text())
            period_us = int((base / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    return None


def available_cpus(root: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPU quota if any, else the CPUs this process may run on (cpuset/affinity)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, max(1, int(limit + 0.5)))
    return max(1, cpus)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get("LOGINAPP_" + name, "").strip()
    return int(value) if value else default


# Argon2 hashing is CPU-bound, so more workers than ~2x CPUs only queue up and
# each in-flight hash holds 19 MiB; threads cover the I/O waits on the database.
workers = _env_int("WORKERS", 2 * available_cpus() + 1)
threads = _env_int("THREADS", 4)
worker_class = "gthread"
bind = os.environ.get("LOGINAPP_BIND", "0.0.0.0:8000")
backlog = 2048

timeout = _env_int("TIMEOUT", 30)
# Docker/Swarm send SIGTERM and wait 10 s by default before SIGKILL.
graceful_timeout = _env_int("GRACEFUL_TIMEOUT", 25)
keepalive = _env_int("KEEPALIVE", 5)
# Recycle workers now and then, jittered so they do not all restart together.
max_requests = _env_int("MAX_REQUESTS", 10000)
max_requests_jitter = max_requests // 10

# The heartbeat file must live on a tmpfs so a read-only root fs works.
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp"  # noqa: S108

# Gunicorn 24+ opens a control socket in the working directory, which a
# read-only root fs refuses; containers are managed by signals, not by it.
control_socket_disable = True

# %(h)s is REMOTE_ADDR after the app's ProxyFix has applied the proxy's
# X-Forwarded-For, i.e. the real client rather than nginx.
accesslog = os.environ.get("LOGINAPP_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("LOGINAPP_LOG_LEVEL", "info").lower()
access_log_format = '%(h)s - %(u)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'

# Limits against oversized requests before they reach the app.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
proc_name = "loginapp"
