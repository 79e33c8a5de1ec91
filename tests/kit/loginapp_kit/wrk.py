"""wrk, the HTTP load tester, run once and read back: throughput, latency percentiles, errors.

* ``run(url, connections, duration, script=None)``: one wrk run, ``--latency``
  on, parsed into a ``WrkResult`` (the raw output kept for what a script prints);
* ``lua_string(value)``: a Python string as a Lua string literal, for the
  values (bodies, cookies, headers) a bench writes into its wrk scripts.

wrk verifies no TLS certificate; whoever points it at HTTPS checks the site
with ``loginapp_kit.client.Client`` first.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# wrk's time units (format_time in its src/units.c), in milliseconds.
_MS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


@dataclass
class WrkResult:
    rps: float  # requests/s over the run
    p50_ms: float  # latency percentiles (nan when wrk printed none)
    p99_ms: float
    errors: int  # non-2xx/3xx responses + socket errors (connect, read, write, timeout)
    requests: int  # requests completed
    elapsed: float  # seconds the run lasted, as wrk measured it
    output: str  # wrk's stdout, including whatever the script's done() printed


@dataclass
class Row:
    """One cell of a benchmark table: a server, a scenario, a number of connections, what wrk saw."""

    server: str
    scenario: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    trips_per_s: float | None = None  # completed login round trips per second, when the scenario has them


def available() -> bool:
    return shutil.which("wrk") is not None


def _ms(value: str) -> float:
    match = re.fullmatch(_TIME, value)
    return float(match.group(1)) * _MS_PER_UNIT[match.group(2)] if match else math.nan


def parse(output: str) -> WrkResult:
    """Read wrk's report (made with ``--latency``)."""
    summary = re.search(r"^\s*(\d+) requests in " + _TIME, output, re.MULTILINE)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if not summary or not rps:
        raise ValueError(f"not a wrk report:\n{output[-2000:]}")
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", output, re.MULTILINE))
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        errors += sum(int(n) for n in match.groups())
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=_ms(percentiles.get("50", "")),
        p99_ms=_ms(percentiles.get("99", "")),
        errors=errors,
        requests=int(summary.group(1)),
        elapsed=_ms(summary.group(2) + summary.group(3)) / 1000,
        output=output,
    )


def run(url: str, connections: int, duration: float, script: str | Path | None = None, *, threads: int = 2,
        timeout: str = "10s", netns_of: int | None = None) -> WrkResult:  # fmt: skip
    """``wrk -t THREADS -c CONNECTIONS -d DURATIONs --timeout TIMEOUT --latency [-s SCRIPT] URL``.

    ``script`` is a Lua file (``Path``) or Lua source (``str``, written to a
    temporary file for the run). Threads are capped at the connections, as wrk
    requires. ``netns_of``: run wrk in the network namespace of that process
    (nsenter, as root), e.g. a container's. RuntimeError when wrk fails or
    prints no report.
    """
    if not available():
        raise FileNotFoundError("wrk not found (apt-get install -y wrk)")
    command = [
        "wrk", "-t", str(max(1, min(threads, connections))), "-c", str(connections), "-d", f"{duration:g}s",
        "--timeout", timeout, "--latency",
    ]  # fmt: skip
    if netns_of is not None:
        command = ["nsenter", "--net", "--target", str(netns_of), *command]
    with tempfile.TemporaryDirectory(prefix="loginapp-wrk-") as tmp:
        if isinstance(script, str):
            path = Path(tmp) / "script.lua"
            path.write_text(script)
            script = path
        if script is not None:
            command += ["-s", str(script)]
        proc = subprocess.run([*command, url], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} {url} failed ({proc.returncode}): {proc.stderr.strip()}")
    try:
        return parse(proc.stdout)
    except ValueError as error:
        raise RuntimeError(f"{error}\n{proc.stderr.strip()}") from None


def lua_string(value: str) -> str:
    """``value`` as a double-quoted Lua string literal (quotes, backslashes and control characters escaped)."""
    escaped = []
    for char in value:
        if char in '"\\':
            escaped.append("\\" + char)
        elif char == "\n":
            escaped.append("\\n")
        elif ord(char) < 32 or ord(char) == 127:
            escaped.append(f"\\{ord(char):03d}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'
