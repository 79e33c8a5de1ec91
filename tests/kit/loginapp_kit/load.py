"""Steady HTTPS traffic through nginx that counts every lost request."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections import Counter


class LoadGenerator:
    """Steady GET traffic through nginx from ``workers`` threads, every outcome counted.

    Each thread keeps one HTTPS keep-alive connection and alternates through
    ``paths``. Like a browser, a request that fails on a *reused* idle
    connection before any response byte (the server closed it between two
    requests) is retried once on a new connection and counted in
    ``stale_retries``, not as an error; any other failure - a refused or reset
    connection, a timeout, a status outside 2xx/3xx - is an error.
    """

    def __init__(self, host: str, context: ssl.SSLContext, workers: int = 6, paths=("/login", "/healthz"),
                 port: int = 443, pause: float = 0.02, timeout: float = 15):  # fmt: skip
        self.host, self.port, self.context = host, port, context
        self.workers, self.paths, self.pause, self.timeout = workers, paths, pause, timeout
        self.ok = 0
        self.stale_retries = 0
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()  # kind -> count
        self.error_log: list[str] = []  # first few errors, with time
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = self.stopped = 0.0

    @property
    def total(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=self.timeout)

    def _record_error(self, kind: str, detail: str) -> None:
        with self._lock:
            self.errors[kind] += 1
            if len(self.error_log) < 20:
                self.error_log.append(f"{time.monotonic() - self.started:7.2f}s {kind}: {detail}")

    def _once(self, conn, path):
        conn.request("GET", path, headers={"User-Agent": "loginapp-loadgen"})
        resp = conn.getresponse()
        resp.read()
        return resp

    def _run(self, index: int) -> None:
        conn, reused, n = None, False, index
        while not self._stop.is_set():
            path = self.paths[n % len(self.paths)]
            n += 1
            try:
                if conn is None:
                    conn, reused = self._connect(), False
                try:
                    resp = self._once(conn, path)
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    if not reused:
                        raise
                    # The idle keep-alive connection was closed under us: retry once, fresh.
                    with self._lock:
                        self.stale_retries += 1
                    conn.close()
                    conn, reused = self._connect(), False
                    resp = self._once(conn, path)
                reused = True
                with self._lock:
                    self.statuses[resp.status] += 1
                if 200 <= resp.status < 400:
                    with self._lock:
                        self.ok += 1
                else:
                    self._record_error(f"HTTP {resp.status}", path)
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self._record_error(type(exc).__name__, f"{path}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def start(self) -> LoadGenerator:
        self.started = time.monotonic()
        for i in range(self.workers):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True, name=f"load-{i}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> LoadGenerator:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        self.stopped = time.monotonic()
        return self

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def summary(self) -> str:
        seconds = (self.stopped or time.monotonic()) - self.started
        return (
            f"{self.total} requests in {seconds:.0f} s: {self.ok} ok, {self.failed} failed "
            f"{dict(self.errors)}, statuses {dict(self.statuses)}, stale keep-alive retries {self.stale_retries}"
            + ("".join("\n  " + line for line in self.error_log) if self.error_log else "")
        )
