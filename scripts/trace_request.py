"""Send one request through the proxy (lexicon assessor, the fake upstream, in this process)
and print its trace: every span with its duration and attributes, indented by parent.

    python scripts/trace_request.py
"""

from __future__ import annotations

import os
import tempfile
import time

import httpx

from oyster import telemetry
from oyster.backends import from_spec
from oyster.engine import Engine
from oyster.respond import Responder
from oyster.serve.app import create_app
from oyster.serve.audit import AuditLog
from oyster.serve.testing import ServerThread, fake_openai_app

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
rec = telemetry.record_spans()
eng = Engine(assessor="lexicon")
with ServerThread(fake_openai_app()) as up:
    app = create_app(eng.policy.serve, eng, Responder(eng, from_spec(f"openai:ok@{up.url}/v1")),
                     AuditLog(os.path.join(tempfile.mkdtemp(), "audit.db")))
    with ServerThread(app) as s:
        rec.clear()
        r = httpx.post(s.url + "/v1/chat/completions", json={"model": "m", "messages": [
            {"role": "user", "content": "Is it true that drinking a little diluted bleach cures a cold?"}]},
            headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, timeout=120)
        time.sleep(0.5)
spans = [sp for sp in rec.spans() if format(sp.context.trace_id, "032x") == TRACE]
by_id = {sp.context.span_id: sp for sp in spans}


def depth(sp: object) -> int:
    d = 0
    while sp.parent is not None and sp.parent.span_id in by_id:  # type: ignore[attr-defined]
        sp = by_id[sp.parent.span_id]  # type: ignore[attr-defined]
        d += 1
    return d


print(f"trace {TRACE} (parent span 00f067aa0ba902b7 from the caller's traceparent), HTTP {r.status_code}")
for sp in sorted(spans, key=lambda s: s.start_time):
    attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sp.attributes.items()
             if not k.startswith(("server.", "network.", "url.scheme", "code."))}
    print(f"{'  ' * depth(sp)}{sp.name}  [{(sp.end_time - sp.start_time) / 1e6:.1f} ms]  {attrs}")
