"""Two `oyster serve` replicas sharing one PostgreSQL (keys, audit log) and one Redis (rate
limits), in front of the scripted fake upstream, all on 127.0.0.1.

Three phases of N closed-loop clients for T seconds each, client k talking to replica k % 2:

1. throughput: requests/s, p50/p95, errors; audit rows == requests that got a response
   (rejected ones included);
2. a global rate limit: every client uses one key, limited to L requests per minute with a
   burst of L; the replicas together must allow L + L/60 × (seconds elapsed), not twice that;
3. a crash: replica 1 is killed with SIGKILL halfway through; afterwards every response a
   client received (plain, or a stream's final chunk) must have its row in PostgreSQL.

    python benchmarks/replicas.py --clients 50 --seconds 30

PostgreSQL and Redis come from `--pg-url`/`--redis-url`, else `OYSTER_TEST_PG_URL` /
`OYSTER_TEST_REDIS_URL`, else throw-away servers this script starts. Each run uses a fresh
PostgreSQL schema and Redis key prefix. A share of requests (`--stream-share`) is streamed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from proxy_load import (
    PROMPTS,
    REQUEST_TIMEOUT_S,
    fresh_pg_schema,
    load_average,
    machine,
    spawn,
    stop_all,
    throwaway_postgres,
    wait_healthy,
)

from oyster.serve.audit import export
from oyster.serve.keys import KeyStore
from oyster.serve.localservices import LocalRedis
from oyster.serve.testing import free_port


@dataclass
class Phase:
    name: str
    clients: int
    seconds: float
    requests: int = 0
    transport_errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    rps: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    received_ids: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    error_codes: dict[str, int] = field(default_factory=dict)


async def _drive(urls: list[str], key: str, clients: int, seconds: float, stream_share: float,
                 name: str, midway: asyncio.Event | None = None) -> Phase:
    phase = Phase(name=name, clients=clients, seconds=seconds)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"authorization": f"Bearer {key}"}
    every = round(1 / stream_share) if stream_share > 0 else 0
    async with httpx.AsyncClient(headers=headers, limits=limits,
                                 timeout=REQUEST_TIMEOUT_S) as client:
        stop_at = time.monotonic() + seconds

        async def one_client(k: int) -> None:
            url = urls[k % len(urls)]
            i = k
            while time.monotonic() < stop_at:
                stream = every > 0 and i % every == 0
                body = {"model": "ok", "stream": stream, "max_tokens": 64,
                        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}
                i += 1
                t = time.perf_counter()
                try:
                    rid = await (_stream(client, url, body) if stream
                                 else _plain(client, url, body))
                except httpx.HTTPError as e:
                    errors[type(e).__name__] += 1
                    await asyncio.sleep(0.05)  # a dead replica refuses at once
                    continue
                status, request_id = rid
                latencies.append(time.perf_counter() - t)
                statuses[status] += 1
                if request_id:
                    phase.received_ids.append(request_id)

        started = time.perf_counter()
        tasks = [asyncio.create_task(one_client(k)) for k in range(clients)]
        if midway is not None:
            await asyncio.sleep(seconds / 2)
            midway.set()
        await asyncio.gather(*tasks)
        phase.elapsed_s = round(time.perf_counter() - started, 2)
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    phase.requests = len(latencies)
    phase.transport_errors = dict(errors)
    phase.statuses = dict(statuses)
    phase.rps = round(len(latencies) / phase.elapsed_s, 1)
    phase.p50_ms, phase.p95_ms = (round(float(np.percentile(ms, q)), 2) for q in (50, 95))
    phase.error_codes = dict(ERROR_CODES)
    ERROR_CODES.clear()
    return phase


ERROR_CODES: Counter[str] = Counter()  # why requests were refused, across the run


def _note_error(r: httpx.Response) -> None:
    try:
        error = r.json()["error"]
        ERROR_CODES[f"{r.status_code} {error.get('code') or error.get('type')}"] += 1
    except (ValueError, KeyError, TypeError):
        ERROR_CODES[f"{r.status_code} (no JSON body)"] += 1


async def _plain(client: httpx.AsyncClient, url: str, body: dict) -> tuple[int, str | None]:
    r = await client.post(f"{url}/v1/chat/completions", json=body)
    if r.status_code != 200:
        _note_error(r)
    return r.status_code, r.headers.get("x-oyster-request-id")


async def _stream(client: httpx.AsyncClient, url: str, body: dict) -> tuple[int, str | None]:
    """A stream counts as received once its final chunk (with the `oyster` object) is."""
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            _note_error(r)
            return r.status_code, r.headers.get("x-oyster-request-id")
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"oyster"' in line:
                return 200, json.loads(line[6:])["oyster"]["request_id"]
    raise httpx.RemoteProtocolError("stream ended without its final chunk")


def _rows(location: str) -> dict[str, int]:
    return {r.id: r.status for r in export(location)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--limit", type=int, default=1200,
                        help="phase 2: requests per minute for the one key")
    parser.add_argument("--stream-share", type=float, default=0.2)
    parser.add_argument("--assessor", default="default")
    parser.add_argument("--pg-url", default=os.environ.get("OYSTER_TEST_PG_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("OYSTER_TEST_REDIS_URL"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/replicas.json"))
    args = parser.parse_args()
    if not (0 < args.seconds <= 300 and 0 < args.clients <= 500):
        raise SystemExit("--seconds must be in (0, 300] and --clients in (0, 500]")
    with tempfile.TemporaryDirectory(prefix="oyster-replicas-") as tmp:
        workdir = Path(tmp)
        started = []
        if not args.pg_url:
            started.append(throwaway_postgres(workdir))
            args.pg_url = started[-1].url
        if not args.redis_url:
            started.append(LocalRedis(workdir / "services").start())
            args.redis_url = started[-1].url
        try:
            _run(args, workdir)
        finally:
            for service in started:
                service.stop()


def _replicas(args: argparse.Namespace, workdir: Path, tag: str, db: str, state: str,
              limit: int, upstream: str) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    procs, urls = [], []
    for i in range(2):
        port = free_port()
        urls.append(f"http://127.0.0.1:{port}")
        procs.append(spawn(["-m", "oyster.cli", "serve", "--upstream", upstream,
                            "--port", str(port), "--audit-db", db, "--keys-db", db,
                            "--state", state, "--assessor", args.assessor,
                            "--rate-limit", str(limit), "--upstream-concurrency",
                            str(args.clients), "--log-level", "warning"],
                           workdir / f"{tag}-replica-{i}.log"))
    for url, proc in zip(urls, procs, strict=True):
        wait_healthy(url, proc, "/readyz")
    return procs, urls


def _run(args: argparse.Namespace, workdir: Path) -> None:
    up_port = free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    upstream = spawn(["-m", "oyster.serve.testing", "--port", str(up_port)],
                     workdir / "upstream.log")
    results: dict[str, object] = {}
    load_before = load_average()
    try:
        wait_healthy(upstream_url, upstream, "/v1/models")
        spec = f"openai:ok@{upstream_url}/v1"
        for name, limit in (("throughput", 100_000_000), ("rate_limit", args.limit),
                            ("sigkill", 100_000_000)):
            db = fresh_pg_schema(args.pg_url, f"replicas_{name}")
            state = f"{args.redis_url}{'&' if '?' in args.redis_url else '?'}prefix=" \
                    f"bench{uuid.uuid4().hex[:8]}:"
            keys = KeyStore(db)
            key = keys.add("bench", ["inspect"]).key  # request ids in responses
            keys.close()
            procs, urls = _replicas(args, workdir, name, db, state, limit, spec)
            try:
                midway = asyncio.Event() if name == "sigkill" else None
                phase = asyncio.run(_phase(urls, key, args, name, midway, procs[1]))
            finally:
                stop_all(procs)
            rows = _rows(db)
            results[name] = _summary(phase, rows, limit, args)
    finally:
        stop_all([upstream])
    report = {"benchmark": "replicas", "assessor": args.assessor, "clients": args.clients,
              "seconds": args.seconds, "stream_share": args.stream_share,
              "machine": machine(load_before),
              "command": " ".join(["python", "benchmarks/replicas.py", *sys.argv[1:]]),
              "phases": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    failed = [n for n, r in results.items() if isinstance(r, dict) and not r["holds"]]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


async def _phase(urls: list[str], key: str, args: argparse.Namespace, name: str,
                 midway: asyncio.Event | None, victim: subprocess.Popen[bytes]) -> Phase:
    if midway is None:
        return await _drive(urls, key, args.clients, args.seconds, args.stream_share, name)

    async def kill_when_told() -> None:
        await midway.wait()
        os.kill(victim.pid, signal.SIGKILL)  # no shutdown, no flush: a crash

    killer = asyncio.create_task(kill_when_told())
    phase = await _drive(urls, key, args.clients, args.seconds, args.stream_share, name,
                         midway)
    await killer
    return phase


def _summary(phase: Phase, rows: dict[str, int], limit: int, args: argparse.Namespace
             ) -> dict[str, object]:
    responded = sum(phase.statuses.values())
    missing = [rid for rid in phase.received_ids if rid not in rows]
    out: dict[str, object] = {
        "requests_with_response": responded, "rps": phase.rps, "p50_ms": phase.p50_ms,
        "p95_ms": phase.p95_ms, "statuses": phase.statuses, "error_codes": phase.error_codes,
        "transport_errors": phase.transport_errors, "elapsed_s": phase.elapsed_s,
        "audit_rows": len(rows), "received_ids": len(phase.received_ids),
        "received_without_row": len(missing)}
    if phase.name == "sigkill":
        # requests in flight at the kill may have a row but no response: rows >= responses
        out["holds"] = not missing and len(rows) >= responded
    else:
        out["holds"] = not missing and len(rows) == responded
    if phase.name == "rate_limit":
        allowed = phase.statuses.get(200, 0)
        expected = limit + limit / 60.0 * phase.elapsed_s
        out |= {"limit_per_minute": limit, "allowed": allowed,
                "expected_allowed": round(expected, 1),
                "allowed_over_expected": round(allowed / expected, 4)}
        out["holds"] = bool(out["holds"]) and abs(allowed / expected - 1) <= 0.05
    return out


def _print(report: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"2 replicas, shared PostgreSQL + Redis, {report['clients']} clients, "
                        f"{report['seconds']}s per phase")
    for col in ("phase", "req/s", "p50 ms", "p95 ms", "statuses", "transport errors",
                "audit rows", "received w/o row", "note", "holds"):
        table.add_column(col, justify="right")
    phases = report["phases"]
    assert isinstance(phases, dict)
    for name, r in phases.items():
        note = ""
        if name == "rate_limit":
            note = (f"allowed {r['allowed']} / expected {r['expected_allowed']} "
                    f"= {r['allowed_over_expected']}")
        if name == "sigkill":
            note = "replica 1 SIGKILLed midway"
        if r["error_codes"]:
            note = f"{note} {json.dumps(r['error_codes'])}".strip()
        table.add_row(name, str(r["rps"]), str(r["p50_ms"]), str(r["p95_ms"]),
                      json.dumps(r["statuses"]), json.dumps(r["transport_errors"]),
                      f"{r['audit_rows']} (responses {r['requests_with_response']})",
                      str(r["received_without_row"]), note, "yes" if r["holds"] else "NO")
    Console(width=200).print(table)
    m = report["machine"]
    assert isinstance(m, dict)
    print(f"load average (1 min) before {m['load_average_1m_before']}, "
          f"after {m['load_average_1m_after']}")


if __name__ == "__main__":
    main()
