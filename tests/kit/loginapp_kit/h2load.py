"""h2load (nghttp2's load tester), for what wrk cannot speak: HTTP/2, against HTTP/1.1 with the same tool.

* ``run(url, connections, requests, ...)``: one h2load run, parsed into an
  ``H2loadResult``;
* ``run_for(url, connections, seconds, rate_hint, ...)``: runs repeated until
  they last ``seconds``, summed.

h2load never reconnects: a connection nginx closes after its
``keepalive_requests`` (1000 by default) fails every request still queued on
it. So one run sends at most ``REQUESTS_PER_CONNECTION`` per connection, and
``run_for`` repeats runs instead of making one long one. h2load verifies no
TLS certificate; whoever points it at HTTPS checks the site first.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

# Below nginx's keepalive_requests default (1000), which the stack keeps.
REQUESTS_PER_CONNECTION = 900


@dataclass
class H2loadResult:
    succeeded: int  # answered 2xx or 3xx
    errors: int  # answered otherwise, reset or timed out
    elapsed: float  # seconds
    protocol: str  # what the server agreed to (ALPN): "h2" or "http/1.1"

    @property
    def rps(self) -> float:
        return self.succeeded / self.elapsed if self.elapsed else 0.0

    def __add__(self, other: H2loadResult) -> H2loadResult:
        return H2loadResult(
            self.succeeded + other.succeeded, self.errors + other.errors, self.elapsed + other.elapsed, self.protocol
        )


def available() -> bool:
    return shutil.which("h2load") is not None


def parse(output: str) -> H2loadResult:
    """Read h2load's report."""
    # "finished in 6.22s, 1408.83 req/s": the time has two decimals only, the rate (requests done / time) more.
    finished = re.search(r"^finished in [\d.]+(?:us|ms|s), ([\d.]+) req/s,", output, re.MULTILINE)
    # "failed" counts every request not answered 2xx or 3xx: bad statuses, and (as "errored") resets and timeouts.
    counts = re.search(
        r"^requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed,", output, re.MULTILINE
    )
    protocol = re.search(r"^Application protocol: (\S+)", output, re.MULTILINE)
    if not (finished and counts):
        raise ValueError(f"not an h2load report:\n{output[-2000:]}")
    done, rate = int(counts.group(1)), float(finished.group(1))
    return H2loadResult(
        succeeded=int(counts.group(2)),
        errors=int(counts.group(3)),
        elapsed=done / rate if rate else 0.0,
        protocol=protocol.group(1) if protocol else "",
    )


def run(url: str, connections: int, requests: int, *, streams: int = 1, http1: bool = False,
        threads: int = 2) -> H2loadResult:  # fmt: skip
    """``h2load [--h1] -n REQUESTS -c CONNECTIONS -m STREAMS -t THREADS URL``; RuntimeError when it fails."""
    if not available():
        raise FileNotFoundError("h2load not found (apt-get install -y nghttp2-client)")
    command = ["h2load", "-n", str(requests), "-c", str(connections), "-m", str(streams),
               "-t", str(max(1, min(threads, connections)))]  # fmt: skip
    if http1:
        command.append("--h1")
    proc = subprocess.run([*command, url], capture_output=True, text=True, check=False)
    try:
        result = parse(proc.stdout)
    except ValueError as error:
        raise RuntimeError(f"{' '.join(command)} {url} failed ({proc.returncode}): {error}\n{proc.stderr}") from None
    expected = "http/1.1" if http1 else "h2"
    if result.protocol != expected:
        raise RuntimeError(f"{url} spoke {result.protocol or 'nothing'}, not {expected}")
    return result


def run_for(url: str, connections: int, seconds: float, rate_hint: float, *, streams: int = 1,
            http1: bool = False) -> H2loadResult:  # fmt: skip
    """Runs of at most REQUESTS_PER_CONNECTION per connection, each about ``seconds`` at ``rate_hint`` req/s,
    repeated until they last ``seconds`` in all."""
    requests = max(connections, min(connections * REQUESTS_PER_CONNECTION, int(rate_hint * seconds)))
    total = run(url, connections, requests, streams=streams, http1=http1)
    while total.elapsed < seconds:
        total += run(url, connections, requests, streams=streams, http1=http1)
    return total
