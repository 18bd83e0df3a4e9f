"""Load test of `oyster serve`: N concurrent clients for T seconds against the proxy, in
front of a fast fake OpenAI-compatible upstream, all on 127.0.0.1.

In one run it:
1. starts the fake upstream (`python -m oyster.serve.testing`) and one proxy (`oyster serve`
   with an API key, the engine's default assessor, fail mode closed) per audit backend
   (`--audit sqlite,postgresql,postgresql-async`: a SQLite file in WAL mode with
   synchronous=NORMAL, which survives a crash of the proxy but not of the machine; a fresh
   schema in PostgreSQL with its default synchronous_commit=on, which survives both; the
   same with synchronous_commit=off, durable like the SQLite setting) as subprocesses;
2. drives the fake upstream directly with N clients for T seconds (the baseline);
3. drives each proxy in turn with N clients for T seconds (with `--rounds R`, in R turns of
   T/R seconds each, the proxies alternating);
4. reports requests/s, p50/p95/p99 latency of each, the latency each proxy adds
   (proxy percentile minus direct percentile), errors, and checks that each audit log has
   exactly one row per request that got a response;
5. stops everything (bounded: each phase ends at T, each request times out, the
   subprocesses are killed on exit).

    python benchmarks/proxy_load.py --clients 50 --seconds 30
    python benchmarks/proxy_load.py --clients 1,50 --seconds 10 --stream
    python benchmarks/proxy_load.py --clients 1 --seconds 20 --audit sqlite,postgresql
    python benchmarks/proxy_load.py --clients 1 --seconds 20 --baseline-src /tmp/old/src
    python benchmarks/proxy_load.py --clients 1,4,8 --batch-window-ms 0,5 --rounds 4

`--baseline-src PATH` runs a second proxy from another source tree (an older commit
exported with `git archive`), labelled "before", and `--batch-window-ms 0,5` one proxy per
micro-batching window; with `--rounds` they take turns, so before and after (or the
windows) share the machine's drift. `--distinct` makes every prompt unique (a number
appended), so no embedding cache answers for the encoder: the cost of new traffic.

PostgreSQL comes from `--pg-url`, else `OYSTER_TEST_PG_URL`, else a throw-away server this
script starts (`oyster.serve.localservices`).

Clients are closed-loop (send, wait for the reply, send again), so with many clients the
latency is mostly queueing: it shows what the proxy costs at its throughput limit on this
machine. Prompts are ordinary questions, meant to be ones whose fake reply passes
verification, so that each proxy request makes one upstream call and the difference to
the baseline is the proxy's own work (auth, limits, decision, steering, verification, audit
write, HTTP hop). The fake reply answers none of them, though, and the relevance check
rejects it for one (so that request is regenerated and ends in the fallback, two upstream
calls): `+p50 passed` is the added p50 of the requests that passed at the first try (their
count in brackets), beside `+p50` of all of them.
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
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from oyster.serve.audit import count as audit_count
from oyster.serve.keys import KeyStore
from oyster.serve.localservices import LocalPostgres
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
# audit backend -> PostgreSQL session settings
AUDITS = {"sqlite": "", "postgresql": "", "postgresql-async": "-csynchronous_commit=off"}
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
    passed: int = 0  # requests whose reply passed verification at the first try
    p50_passed_ms: float = 0.0


def wait_healthy(url: str, proc: subprocess.Popen[bytes], path: str) -> None:
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


@dataclass
class Samples:
    """What the clients saw, accumulated over one or more phases against one target."""

    latencies: list[float] = field(default_factory=list)
    passed: list[float] = field(default_factory=list)  # latencies with outcome "passed"
    errors: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed: float = 0.0

    def result(self, target: str, clients: int, seconds: float) -> PhaseResult:
        ms = np.array(self.latencies) * 1000 if self.latencies else np.zeros(1)
        p50, p95, p99 = (round(float(np.percentile(ms, q)), 2) for q in (50, 95, 99))
        return PhaseResult(target=target, clients=clients, seconds=seconds,
                           requests=len(self.latencies), errors=sum(self.errors.values()),
                           error_kinds=dict(self.errors), statuses=dict(self.statuses),
                           outcomes=dict(self.outcomes),
                           rps=round(len(self.latencies) / max(self.elapsed, 1e-9), 1),
                           p50_ms=p50, p95_ms=p95, p99_ms=p99,
                           mean_ms=round(float(ms.mean()), 2), passed=len(self.passed),
                           p50_passed_ms=round(float(np.percentile(self.passed, 50)) * 1000, 2)
                           if self.passed else 0.0)


_sent = [0]  # prompts sent so far (--distinct numbers them)


async def _drive(url: str, headers: dict[str, str], clients: int, seconds: float,
                 stream: bool, model: str, samples: Samples, distinct: bool = False) -> None:
    latencies, errors = samples.latencies, samples.errors
    outcomes, statuses = samples.outcomes, samples.statuses
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=REQUEST_TIMEOUT_S) as client:
        stop_at = time.monotonic() + seconds

        async def one_client(k: int) -> None:
            i = k
            while time.monotonic() < stop_at:
                prompt = PROMPTS[i % len(PROMPTS)]
                if distinct:
                    _sent[0] += 1
                    prompt = f"{prompt} (#{_sent[0]})"
                body = {"model": model, "stream": stream, "max_tokens": 64,
                        "messages": [{"role": "user", "content": prompt}]}
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
                if outcome == "passed":
                    samples.passed.append(latencies[-1])

        started = time.perf_counter()
        await asyncio.gather(*(one_client(k) for k in range(clients)))
        samples.elapsed += time.perf_counter() - started


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - closed when the process is reaped
    return subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def machine(load_before: float) -> dict[str, object]:
    """What the numbers were measured on; other work on the machine skews them."""
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "platform": platform.platform(), "load_average_1m_before": load_before,
            "load_average_1m_after": load_average()}


def throwaway_postgres(workdir: Path) -> LocalPostgres:
    """A PostgreSQL server in `workdir/services`. Run as root, the server runs as the
    postgres user, who must pass through `workdir` (a private temporary folder): it is
    opened for traversal only."""
    os.chmod(workdir, 0o711)
    return LocalPostgres(workdir / "services").start()


def fresh_pg_schema(server_url: str, name: str, settings: str = "") -> str:
    """A new schema on `server_url`, as a URL whose tables land in it (with `settings`,
    e.g. `-csynchronous_commit=off`, for its sessions)."""
    from urllib.parse import quote

    import psycopg

    schema = f"{name}_{int(time.time())}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in server_url else "?"
    options = quote(f"-csearch_path={schema} {settings}".strip(), safe="")
    return f"{server_url}{sep}options={options}"


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="50",
                        help="concurrent clients; a comma list runs each level (default 50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--stream", action="store_true", help="streamed completions")
    parser.add_argument("--assessor", default="default")
    parser.add_argument("--audit", default="sqlite",
                        help="audit backends to compare, a comma list of sqlite, postgresql, "
                             "postgresql-async")
    parser.add_argument("--rounds", type=int, default=1,
                        help="split each proxy phase into this many rounds, the audit "
                             "backends taking turns (so they share the machine's drift)")
    parser.add_argument("--pg-url", default=os.environ.get("OYSTER_TEST_PG_URL"),
                        help="PostgreSQL server for --audit postgresql (default: "
                             "$OYSTER_TEST_PG_URL, else a throw-away one)")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="also run a proxy from this source tree, labelled 'before'")
    parser.add_argument("--batch-window-ms", default="",
                        help="a comma list of micro-batching windows: one proxy each "
                             "(default: the serve default)")
    parser.add_argument("--distinct", action="store_true",
                        help="number every prompt, so no embedding cache answers")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/proxy_load.json"))
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    audits = args.audit.split(",")
    if not 0 < args.seconds <= 600 or not all(0 < n <= 1000 for n in levels):
        raise SystemExit("--seconds must be in (0, 600] and each --clients in (0, 1000]")
    if not set(audits) <= set(AUDITS):
        raise SystemExit(f"--audit: a comma list of {', '.join(AUDITS)}")

    with tempfile.TemporaryDirectory(prefix="oyster-proxy-load-") as tmp:
        workdir = Path(tmp)
        pg = None
        if any(a != "sqlite" for a in audits) and not args.pg_url:
            pg = throwaway_postgres(workdir)
            args.pg_url = pg.url
        try:
            _run(args, levels, audits, workdir)
        finally:
            if pg is not None:
                pg.stop()


def _run(args: argparse.Namespace, levels: list[int], audits: list[str], workdir: Path
         ) -> None:
    keys = KeyStore(workdir / "keys.db")
    key = keys.add("bench", ["inspect", "admin"]).key  # outcomes and health details
    keys.close()
    up_port = free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    procs = [spawn(["-m", "oyster.serve.testing", "--port", str(up_port)],
                   workdir / "upstream.log")]
    # label -> (proxy URL, audit location); the label names the audit backend and variant
    proxies: dict[str, tuple[str, str]] = {}
    variants: list[tuple[str, dict[str, str], list[str]]] = []  # (label, env, extra args)
    if args.baseline_src is not None:
        variants.append(("before", {"PYTHONPATH": str(args.baseline_src)}, []))
    windows = [w for w in args.batch_window_ms.split(",") if w]
    variants += ([(f"window {w} ms", {}, ["--batch-window-ms", w]) for w in windows]
                 or [("after" if args.baseline_src is not None else "", {}, [])])
    for audit in audits:
        for n, (variant, env, extra) in enumerate(variants):
            label = f"{audit} {variant}".strip()
            port = free_port()
            location = (str(workdir / f"audit-{n}.db") if audit == "sqlite"
                        else fresh_pg_schema(args.pg_url, "bench_audit", AUDITS[audit]))
            proxies[label] = (f"http://127.0.0.1:{port}", location)
            procs.append(spawn(
                ["-m", "oyster.cli", "serve", "--upstream", f"openai:ok@{upstream_url}/v1",
                 "--port", str(port), "--audit-db", location,
                 "--keys-db", str(workdir / "keys.db"), "--assessor", args.assessor,
                 "--rate-limit", "100000000", "--upstream-concurrency", str(max(levels)),
                 "--log-level", "warning", *extra], workdir / f"proxy-{n}-{audit}.log",
                env))
    rows = []
    load_before = load_average()
    try:
        wait_healthy(upstream_url, procs[0], "/v1/models")
        for (url, _), proc in zip(proxies.values(), procs[1:], strict=True):
            wait_healthy(url, proc, "/healthz")
        health = httpx.get(next(iter(proxies.values()))[0] + "/healthz",
                           headers={"authorization": f"Bearer {key}"}).json()
        for clients in levels:
            direct_samples = Samples()
            asyncio.run(_drive(upstream_url, {}, clients, args.seconds, args.stream, "ok",
                               direct_samples, args.distinct))
            direct = direct_samples.result(upstream_url, clients, args.seconds)
            before = {audit: audit_count(location) for audit, (_, location) in proxies.items()}
            samples = {audit: Samples() for audit in proxies}
            for _ in range(args.rounds):  # interleaved: drift in the machine's load is shared
                for audit, (url, _) in proxies.items():
                    asyncio.run(_drive(url, {"authorization": f"Bearer {key}"}, clients,
                                       args.seconds / args.rounds, args.stream, "ok",
                                       samples[audit], args.distinct))
            for audit, (url, location) in proxies.items():
                proxied = samples[audit].result(url, clients, args.seconds)
                # every request gets a row, whatever its status
                responded = sum(proxied.statuses.values())
                rows_written = audit_count(location) - before[audit]
                rows.append({
                    "clients": clients, "seconds": args.seconds, "stream": args.stream,
                    "audit": audit, "direct": asdict(direct), "proxy": asdict(proxied),
                    "added_p50_ms": round(proxied.p50_ms - direct.p50_ms, 2),
                    "added_p95_ms": round(proxied.p95_ms - direct.p95_ms, 2),
                    "added_p50_passed_ms": round(proxied.p50_passed_ms - direct.p50_ms, 2),
                    "audit_rows": rows_written, "responses": responded,
                    "audit_rows_match": rows_written == responded,
                })
    finally:
        stop_all(procs)

    report = {"benchmark": "proxy_load", "assessor": f"{args.assessor} -> {health['assessor']}",
              "policy": health["policy"], "machine": machine(load_before),
              "command": " ".join(["python", "benchmarks/proxy_load.py", *sys.argv[1:]]),
              "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(rows)
    print(f"\nload average (1 min) before {report['machine']['load_average_1m_before']}, "
          f"after {report['machine']['load_average_1m_after']}; wrote {args.out}")
    if not all(r["audit_rows_match"] for r in rows):
        raise SystemExit("audit rows do not match the responses")


def _print_table(rows: list[dict[str, object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="oyster serve under load (closed-loop clients, 127.0.0.1)")
    for col in ("clients", "target", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
                "+p50 ms", "+p95 ms", "+p50 passed", "audit rows"):
        table.add_column(col, justify="right")
    shown_direct: set[int] = set()
    for r in rows:
        d, p = r["direct"], r["proxy"]
        assert isinstance(d, dict) and isinstance(p, dict) and isinstance(r["clients"], int)
        if r["clients"] not in shown_direct:
            shown_direct.add(r["clients"])
            table.add_row(str(r["clients"]), "direct", str(d["rps"]), str(d["p50_ms"]),
                          str(d["p95_ms"]), str(d["p99_ms"]), str(d["errors"]), "", "", "",
                          "")
        table.add_row("", f"proxy, audit {r['audit']}", str(p["rps"]), str(p["p50_ms"]),
                      str(p["p95_ms"]), str(p["p99_ms"]), str(p["errors"]),
                      str(r["added_p50_ms"]), str(r["added_p95_ms"]),
                      f"{r['added_p50_passed_ms']} ({p['passed']})",
                      f"{r['audit_rows']} " + ("=" if r["audit_rows_match"] else "!=")
                      + f" {r['responses']}")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
