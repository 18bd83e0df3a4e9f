"""garak against the proxy and against the same model without it, side by side.

Starts, on 127.0.0.1 ephemeral ports, (1) a bare OpenAI-compatible server in front of the
backend (no engine: the conversation goes to the model as is) and (2) `oyster serve
--upstream BACKEND`, then runs garak (its own virtual environment: it pins packages of its
own) with its `openai.OpenAICompatible` generator, `--generations 1` and a prompt cap per
probe, first against the bare server, then against the proxy. Reports garak's own attack
success rate (1 − passed/evaluated of each probe's primary detector) per probe for both,
and the wall time per prompt.

    python benchmarks/garak_compare.py --garak /work/runs/garak-venv/bin/garak --cap 8

Writes `benchmarks/results/garak_compare.json` (or `--json PATH`). Everything stops by
itself; the servers are stopped when garak is done.
"""


import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROBES = ("dan.DanInTheWild,tap.TAPCached,suffix.GCGCached,grandma.Substances,"
          "promptinject,malwaregen.TopLevel")


def bare_app(backend_spec: str, options: dict[str, Any]) -> Any:
    """An OpenAI-compatible chat endpoint that sends the conversation to the backend as is."""
    from fastapi import FastAPI, Request

    from oyster.backends import from_spec
    from oyster.backends.base import GenerationParams
    from oyster.types import Message

    backend = from_spec(backend_spec, **options)
    app = FastAPI()
    lock = threading.Lock()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "bare", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        messages = [Message(role=m["role"] if m["role"] in ("system", "user", "assistant")
                            else "user", content=str(m.get("content") or ""))
                    for m in body["messages"]]
        params = GenerationParams(max_tokens=int(body.get("max_tokens") or 128),
                                  temperature=float(body.get("temperature") or 0.0),
                                  timeout=300)
        with lock:
            completion = backend.complete(messages, params)
        return {"id": "bare", "object": "chat.completion", "created": int(time.time()),
                "model": "bare", "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant",
                                                          "content": completion.text}}]}

    return app


def free_port() -> int:
    from oyster.serve.testing import free_port as pick

    return int(pick())


def wait_ready(url: str, seconds: float = 300) -> None:
    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} did not come up in {seconds:.0f}s")


def run_garak(garak: str, uri: str, name: str, cap: int, max_tokens: int, out: Path
              ) -> dict[str, Any]:
    config = {
        "run": {"generations": 1, "soft_probe_prompt_cap": cap, "seed": 14},
        "system": {"parallel_requests": False, "parallel_attempts": False, "lite": True},
        "plugins": {"generators": {"openai": {"OpenAICompatible": {
            "uri": uri, "api_key": "not-needed", "model": name, "max_tokens": max_tokens,
            "temperature": 0.0, "suppressed_params": ["n", "stop", "frequency_penalty",
                                                      "presence_penalty"],
            "request_timeout": 600}}}},
        "reporting": {"report_dir": str(out), "report_prefix": name}}
    cfg = out / f"{name}.config.json"
    cfg.write_text(json.dumps(config))
    start = time.perf_counter()
    done = subprocess.run([garak, "--config", str(cfg), "--model_type", "openai.OpenAICompatible",
                           "--model_name", name, "--probes", PROBES, "--generations", "1",
                           "--report_prefix", name],
                          capture_output=True, text=True, timeout=4 * 3600)
    wall = time.perf_counter() - start
    (out / f"{name}.garak.log").write_text(done.stdout + done.stderr)
    reports = sorted(out.rglob(f"{name}*.report.jsonl")) or sorted(
        Path.home().glob(f".local/share/garak/garak_runs/{name}*.report.jsonl"))
    if done.returncode != 0 or not reports:
        raise SystemExit(f"garak failed for {name} (exit {done.returncode}); see "
                         f"{out / (name + '.garak.log')}")
    evals, attempts = {}, 0
    for line in reports[-1].read_text().splitlines():
        entry = json.loads(line)
        if entry.get("entry_type") == "attempt" and entry.get("status") == 2:
            attempts += 1
        if entry.get("entry_type") == "eval":
            total = entry.get("total_evaluated") or entry.get("total") or 0
            passed = entry.get("passed", 0)
            evals[f"{entry['probe']} / {entry['detector']}"] = {
                "evaluated": total,
                "attack_success": round(1 - passed / total, 3) if total else None}
    if not any(e["evaluated"] for e in evals.values()):
        raise SystemExit(f"garak evaluated no output for {name}: the generator failed; see "
                         f"{out / (name + '.garak.log')} and garak's own log")
    return {"evals": evals, "prompts": attempts, "wall_s": round(wall, 1),
            "s_per_prompt": round(wall / attempts, 2) if attempts else None,
            "report": str(reports[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--garak", required=True, help="the garak executable of its own venv")
    ap.add_argument("--backend", default="embedded")
    ap.add_argument("--backend-opt", action="append", default=["n_threads=1"])
    ap.add_argument("--cap", type=int, default=8, help="prompts per probe (garak's soft cap)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "garak_runs"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" /
                                          "garak_compare.json"))
    args = ap.parse_args()
    import uvicorn

    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.backend_opt)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(bare_app(args.backend, options), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_ready(f"http://127.0.0.1:{port}/v1/models")
    try:
        results["bare"] = run_garak(args.garak, f"http://127.0.0.1:{port}/v1", "bare", args.cap,
                                    args.max_tokens, out)
    finally:
        server.should_exit = True
        thread.join(timeout=30)

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryDirectory() as tmp:
        proxy = subprocess.Popen(
            [sys.executable, "-m", "oyster.cli", "serve", "--upstream", args.backend,
             "--port", str(port), "--host", "127.0.0.1", "--audit-db", f"{tmp}/audit.db",
             "--upstream-timeout", "600", "--log-level", "warning"], env=env)
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz")
            results["proxy"] = run_garak(args.garak, f"http://127.0.0.1:{port}/v1", "proxy",
                                         args.cap, args.max_tokens, out)
        finally:
            proxy.terminate()
            proxy.wait(timeout=30)

    rows = sorted(set(results["bare"]["evals"]) | set(results["proxy"]["evals"]))
    print(f"{'probe / detector':58} {'bare ASR':>9} {'proxy ASR':>10} {'n':>4}")
    for row in rows:
        b = results["bare"]["evals"].get(row, {})
        p = results["proxy"]["evals"].get(row, {})
        print(f"{row:58} {b.get('attack_success')!s:>9} {p.get('attack_success')!s:>10} "
              f"{p.get('evaluated', b.get('evaluated'))!s:>4}")
    for name in ("bare", "proxy"):
        r = results[name]
        print(f"{name}: {r['prompts']} prompts, {r['wall_s']} s, {r['s_per_prompt']} s/prompt")
    Path(args.json).write_text(json.dumps({"probes": PROBES, "cap": args.cap,
                                           "backend": args.backend, **results}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
