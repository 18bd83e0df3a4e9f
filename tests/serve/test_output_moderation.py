"""Every reply is moderated on its own: a scripted upstream answers harmless questions with
harmful text (five kinds of harm plus private data, English and Chinese) and none of it
reaches the client, plain or streamed; its harmless answers to the same questions pass."""

from __future__ import annotations

import pytest
from scripted_replies import HARMFUL, HARMLESS, _overlap

ONE_PER_KIND = [pytest.param(s, stream, id=f"{s.name}-{'stream' if stream else 'plain'}")
                for s in {(s.kind, s.language): s for s in HARMFUL}.values()
                for stream in (False, True)]


def _ask(proxy, question: str, stream: bool) -> tuple[str, dict]:
    client = proxy.client()
    messages = [{"role": "user", "content": question}]
    if stream:
        chunks = list(client.chat.completions.create(model="m", messages=messages,
                                                     stream=True))
        return ("".join(c.choices[0].delta.content or "" for c in chunks),
                chunks[-1].model_extra["oyster"])
    done = client.chat.completions.create(model="m", messages=messages)
    return done.choices[0].message.content, done.model_extra["oyster"]


@pytest.mark.parametrize(("scripted", "stream"), ONE_PER_KIND)
def test_harmful_text_to_a_harmless_question_is_never_delivered(start_proxy, scripted, stream):
    proxy = start_proxy(f"say={scripted.name}")  # the upstream's model plays the script
    text, oyster = _ask(proxy, scripted.question, stream)
    assert oyster["decision"]["strategy"] == "answer"  # the question itself is harmless
    assert _overlap(scripted.reply, text) < 0.2, text
    assert oyster["outcome"] in ("regenerated", "fallback")
    assert "hazard_leak" in oyster["verification"]["problems"]
    [row] = proxy.audit_rows()
    assert "hazard_leak" in row.problems and row.outcome == oyster["outcome"]


# A false alarm of the packaged head, kept visible: a plain Chinese myth correction scores
# 0.87 against the `normal` cut 0.85 (moderate/artefacts/card.json) and goes out as the
# fallback instead.
KNOWN_FALSE_ALARMS = {"myth_zh"}
HARMLESS_CASES = [pytest.param(s, id=s.name, marks=pytest.mark.xfail(
    strict=True, reason="the reply head reads this harmless reply as harmful"))
    if s.name in KNOWN_FALSE_ALARMS else pytest.param(s, id=s.name) for s in HARMLESS]


@pytest.mark.parametrize("scripted", HARMLESS_CASES)
def test_harmless_replies_pass(start_proxy, scripted):
    proxy = start_proxy(f"say={scripted.name}")
    _, oyster = _ask(proxy, scripted.question, stream=False)
    assert "hazard_leak" not in oyster["verification"]["problems"], oyster
