"""Load test of `oyster serve`: N concurrent clients for T seconds against the proxy, in
front of a fast fake OpenAI-compatible upstream, all on 127.0.0.1.

In one run it:
1. starts the fake upstream (`python -m oyster.serve.testing`) and the proxy (`oyster serve`
   with an API key, the engine's default assessor, fail mode closed) as subprocesses;
2. drives the fake upstream directly with N clients for T seconds (the baseline);
3. drives the proxy with N clients for T seconds;
4. reports requests/s, p50/p95/p99 latency of both, the latency the proxy adds
   (proxy percentile minus direct percentile), errors, and checks that the audit log has
   exactly one row per answered proxy request;
5. stops everything (bounded: each phase ends at T, each request times out, the
   subprocesses are killed on exit).

    python benchmarks/proxy_load.py --clients 50 --seconds 30
    python benchmarks/proxy_load.py --clients 1,50 --seconds 10 --stream

Clients are closed-loop (send, wait for the reply, send again), so with many clients the
latency is mostly queueing: it shows what the proxy costs at its throughput limit on this
machine. Prompts are ordinary questions whose fake reply passes verification, so each proxy
request makes exactly one upstream call and the difference to the baseline is the proxy's
own work (auth, limits, decision, steering, verification, audit write, HTTP hop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from oyster.serve.audit import count as audit_count
from oyster.serve.keys import KeyStore
from oyster.serve.testing import free_port

# Ordinary questions (R0): a realistic decision for each, one upstream call each.
PROMPTS = (
    "How do I kill a stuck process on Linux?",
    "What's a good recipe for banana bread?",
    "Explain the difference between TCP and UDP.",
    "How can I shoot better photos in low light?",
    "Summarise the causes of the French Revolution in three sentences.",
    "What is the capital of Australia?",
)
REQUEST_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0


@dataclass
class PhaseResult:
    target: str
    clients: int
    seconds: float
    requests: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    rps: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode}")
        try:
            httpx.get(url + path, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {START_TIMEOUT_S:.0f}s")


async def _drive(url: str, headers: dict[str, str], clients: int, seconds: float,
                 stream: bool, model: str) -> PhaseResult:
    result = PhaseResult(target=url, clients=clients, seconds=seconds)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=REQUEST_TIMEOUT_S) as client:
        stop_at = time.monotonic() + seconds

        async def one_client(k: int) -> None:
            i = k
            while time.monotonic() < stop_at:
                body = {"model": model, "stream": stream, "max_tokens": 64,
                        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}
                i += 1
                t = time.perf_counter()
                try:
                    if stream:
                        async with client.stream("POST", "/v1/chat/completions",
                                                 json=body) as r:
                            last = ""
                            async for line in r.aiter_lines():
                                if line.startswith("data: {"):
                                    last = line
                            status = r.status_code
                            outcome = r.headers.get("x-oyster-outcome", "")
                            if '"oyster"' in last:
                                outcome = json.loads(last[6:])["oyster"]["outcome"]
                    else:
                        r = await client.post("/v1/chat/completions", json=body)
                        status = r.status_code
                        outcome = r.headers.get("x-oyster-outcome", "")
                except httpx.HTTPError as e:
                    errors[type(e).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - t)
                statuses[status] += 1
                if status != 200:
                    errors[f"HTTP {status}"] += 1
                if outcome:
                    outcomes[outcome] += 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    result.requests = len(latencies)
    result.errors = sum(errors.values())
    result.error_kinds = dict(errors)
    result.outcomes = dict(outcomes)
    result.statuses = dict(statuses)
    result.rps = round(len(latencies) / elapsed, 1)
    result.p50_ms, result.p95_ms, result.p99_ms = (round(float(np.percentile(ms, q)), 2)
                                                   for q in (50, 95, 99))
    result.mean_ms = round(float(ms.mean()), 2)
    return result


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - closed when the process is reaped
    return subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="50",
                        help="concurrent clients; a comma list runs each level (default 50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--stream", action="store_true", help="streamed completions")
    parser.add_argument("--assessor", default="default")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/proxy_load.json"))
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    if not 0 < args.seconds <= 600 or not all(0 < n <= 1000 for n in levels):
        raise SystemExit("--seconds must be in (0, 600] and each --clients in (0, 1000]")

    with tempfile.TemporaryDirectory(prefix="oyster-proxy-load-") as tmp:
        _run(args, levels, Path(tmp))


def _run(args: argparse.Namespace, levels: list[int], workdir: Path) -> None:
    keys = KeyStore(workdir / "keys.db")
    key = keys.add("bench", ["inspect", "admin"]).key  # outcomes and health details
    keys.close()
    up_port, proxy_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    audit_db = workdir / "audit.db"
    procs = [
        _spawn(["-m", "oyster.serve.testing", "--port", str(up_port)], workdir / "upstream.log"),
        _spawn(["-m", "oyster.cli", "serve", "--upstream", f"openai:ok@{upstream_url}/v1",
                "--port", str(proxy_port), "--audit-db", str(audit_db),
                "--keys-db", str(workdir / "keys.db"), "--assessor", args.assessor,
                "--rate-limit", "100000000", "--upstream-concurrency", str(max(levels)),
                "--log-level", "warning"],
               workdir / "proxy.log"),
    ]
    rows = []
    load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews the numbers
    try:
        _wait_healthy(upstream_url, procs[0], "/v1/models")
        _wait_healthy(proxy_url, procs[1], "/healthz")
        health = httpx.get(proxy_url + "/healthz",
                           headers={"authorization": f"Bearer {key}"}).json()
        for clients in levels:
            before = audit_count(audit_db) if audit_db.exists() else 0
            direct = asyncio.run(_drive(upstream_url, {}, clients, args.seconds, args.stream,
                                        "ok"))
            proxied = asyncio.run(_drive(proxy_url, {"authorization": f"Bearer {key}"},
                                         clients, args.seconds, args.stream, "ok"))
            # every decision is audited, including upstream errors passed through (502/504)
            answered = sum(proxied.statuses.get(s, 0) for s in (200, 502, 504))
            rows_written = audit_count(audit_db) - before
            rows.append({
                "clients": clients, "seconds": args.seconds, "stream": args.stream,
                "direct": asdict(direct), "proxy": asdict(proxied),
                "added_p50_ms": round(proxied.p50_ms - direct.p50_ms, 2),
                "added_p95_ms": round(proxied.p95_ms - direct.p95_ms, 2),
                "audit_rows": rows_written, "answered": answered,
                "audit_rows_match": rows_written == answered,
            })
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    report = {"benchmark": "proxy_load", "assessor": f"{args.assessor} -> {health['assessor']}",
              "policy": health["policy"],
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform(),
                          "load_average_1m_before": load_before,
                          "load_average_1m_after": round(os.getloadavg()[0], 2)},
              "command": " ".join(["python", "benchmarks/proxy_load.py", *sys.argv[1:]]),
              "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(rows)
    print(f"\nwrote {args.out}")
    if not all(r["audit_rows_match"] for r in rows):
        raise SystemExit("audit rows do not match answered requests")


def _print_table(rows: list[dict[str, object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="oyster serve under load (closed-loop clients, 127.0.0.1)")
    for col in ("clients", "target", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
                "+p50 ms", "+p95 ms", "audit rows"):
        table.add_column(col, justify="right")
    for r in rows:
        d, p = r["direct"], r["proxy"]
        assert isinstance(d, dict) and isinstance(p, dict)
        table.add_row(str(r["clients"]), "direct", str(d["rps"]), str(d["p50_ms"]),
                      str(d["p95_ms"]), str(d["p99_ms"]), str(d["errors"]), "", "", "")
        table.add_row("", "proxy", str(p["rps"]), str(p["p50_ms"]), str(p["p95_ms"]),
                      str(p["p99_ms"]), str(p["errors"]), str(r["added_p50_ms"]),
                      str(r["added_p95_ms"]),
                      f"{r['audit_rows']} " + ("=" if r["audit_rows_match"] else "!=")
                      + f" {r['answered']}")
    Console().print(table)


if __name__ == "__main__":
    main()
