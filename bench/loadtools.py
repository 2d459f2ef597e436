"""Load tools shared by the benchmarks: wrk with its latency percentiles parsed; a free port; waiting for a server."""

from __future__ import annotations

import collections
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def wrk(url: str, clients: int, seconds: int, script: Path | None = None, headers: dict[str, str] | None = None) -> dict:
    """Run wrk (`--latency`): requests per second, p50 and p99 in ms, and what was not 2xx."""
    threads = min(clients, 2)
    cmd = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{seconds}s", "--latency", url]
    cmd[1:1] = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    if script:
        cmd[1:1] = ["-s", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = proc.stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    result = {"rps": round(rps), "p50_ms": ms("50"), "p99_ms": ms("99"),
              "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else ""}  # fmt: skip
    if proc.stderr.strip():  # scripts write the answers that were not 2xx there: name them
        result["not_2xx"] = dict(collections.Counter(proc.stderr.strip().splitlines()).most_common(5))
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen, seconds: float = 120, warmed: bool = False) -> float:
    """Seconds until `url` answers 200 (and with `warmed`, until gridmap's /healthz says its
    background warm-up is over: it holds the GIL for seconds); one clear line and exit if the
    server dies or never answers."""
    started = time.monotonic()
    while True:
        try:
            r = httpx.get(url, timeout=1)
            if r.status_code == 200 and not (warmed and r.json().get("warm_up") == "running"):
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() - started > seconds:
            tail = proc.stderr.read().decode()[-500:] if proc.stderr and proc.poll() is not None else ""
            sys.exit(f"error: the server behind {url} did not start: {tail}")
        time.sleep(0.3)
