"""`--upstream embedded`: the proxy with the real embedded model (SmolLM2 via llama.cpp) and
no other service, driven by the official `openai` SDK."""

from __future__ import annotations

import pytest

from oyster.respond import Verifier


@pytest.mark.slow
def test_embedded_upstream_plain_and_streamed(start_proxy, engine):
    proxy = start_proxy(upstream="embedded", upstream_timeout_s=240.0)
    client = proxy.client(timeout=300.0)
    question = [{"role": "user", "content": "What is a good name for a pet goldfish?"}]

    completion = client.chat.completions.create(model="m", messages=question, max_tokens=40)
    text = completion.choices[0].message.content
    oyster = completion.model_extra["oyster"]
    assert text and oyster["outcome"] in ("passed", "regenerated", "repaired", "fallback")
    assert oyster["verification"]["passed"] is True  # whatever went out was checked
    assert completion.model.endswith(".gguf") or completion.model

    chunks = list(client.chat.completions.create(model="m", messages=question, max_tokens=40,
                                                 stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    final = chunks[-1].model_extra["oyster"]
    assert streamed and final["outcome"] in ("passed", "repaired", "fallback")
    decision = engine.decide(question)
    if final["outcome"] == "passed":
        assert Verifier(engine.policy).check(streamed, decision).passed
    assert [r.outcome for r in proxy.audit_rows()] == [oyster["outcome"], final["outcome"]]
