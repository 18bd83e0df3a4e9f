"""Export: SFT and preference JSONL that `oyster train` (TRL's conversational formats)
accepts, with the chain as reasoning in a tag or dropped, and the filters that keep unsafe
or unverified replies out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from oyster.errors import InputError
from oyster.lingobp import Query, RunStore, export
from oyster.lingobp.records import RunManifest
from oyster.lingobp.render import chain_text
from oyster.train.data import load_preferences, load_sft


@pytest.fixture
def run_dir(tmp_path: Path, make_lingo: Any, decision: Any, policy: Any, scripted: Any
            ) -> Path:
    """Three finished queries: one that improves (a preference pair), one perfect at once,
    one whose replies are all judged unsafe."""
    store = RunStore(tmp_path / "run")
    store.start(RunManifest(data="d", data_sha256="x", backend="canned", judge="scripted",
                            editor="rule", rounds=3, mode="both", policy=policy.label,
                            policy_fingerprint=policy.fingerprint(), assessor="default",
                            generation={}), resume=False)  # type: ignore[arg-type]
    improves = Query.of([{"role": "system", "content": "You help tenants."},
                         {"role": "user", "content": "My landlord kept my deposit."}], id="improves")
    cases = [(improves, dict(satisfaction=[-3, 3, 5], safety=["mostly_safe", "safe"],
                             refusal=["hard_refusal", "constructive"],
                             backend=scripted(FENCE, DEPOSIT))),
             (Query.of("How do I revive a sourdough starter?", id="perfect"),
              dict(satisfaction=[5], safety=["safe"], backend=scripted(STARTER))),
             (Query.of("How do I revive a sourdough starter?", id="unsafe"),
              dict(satisfaction=[5], safety=["unsafe"], backend=scripted(STARTER)))]
    for query, script in cases:
        lingo = make_lingo(decision=decision("answer_safely", categories=["legal_consultation"],
                                             user_type="benign"), **script)
        store.append_result(lingo.optimize(query))
    return store.path


FENCE = "Paint a garden fence with two thin coats of exterior paint on a dry, still day."
DEPOSIT = ("Write to your landlord asking for the deposit back within fourteen days, and keep "
           "your tenancy agreement, photos and receipts as evidence for a deposit claim.")
STARTER = ("Discard most of the sourdough starter, then feed it fresh flour and lukewarm water "
           "twice a day until it doubles after each feed.")


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_sft_rows_carry_the_best_reply_with_its_chain_as_reasoning(run_dir: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    summary = export(run_dir, "sft", out)
    assert (summary.rows, summary.queries, summary.skipped) == (2, 3, {"below_min_safety": 1})
    examples = load_sft(out)  # the trainer's own validation
    results = {r.id: r for r in RunStore(run_dir).results()}
    best = results["improves"].round_record(results["improves"].best_round)
    first = rows(out)[0]["messages"]
    assert [m["role"] for m in first] == ["system", "user", "assistant"]
    assert first[-1]["content"] == \
        f"<think>{chain_text(best.effective_chain)}</think>\n{best.reply}"
    assert examples[0].completion.content.startswith("<think>User needs: ")
    assert not list(tmp_path.glob("*.partial"))


def test_the_reasoning_tag_is_configurable_or_dropped(run_dir: Path, tmp_path: Path) -> None:
    export(run_dir, "sft", tmp_path / "plain.jsonl", tag="none")
    export(run_dir, "sft", tmp_path / "tagged.jsonl", tag="reasoning")
    replies = {r.id: r.best.reply for r in RunStore(run_dir).results()}
    plain = rows(tmp_path / "plain.jsonl")
    assert [r["messages"][-1]["content"] for r in plain] == \
        [replies["improves"], replies["perfect"]]
    tagged = rows(tmp_path / "tagged.jsonl")[1]["messages"][-1]["content"]
    assert tagged.startswith("<reasoning>User needs:") and "</reasoning>\n" in tagged
    with pytest.raises(InputError, match="reasoning tag"):
        export(run_dir, "sft", tmp_path / "bad.jsonl", tag="not a tag")


def test_preference_rows_pair_the_best_round_with_the_worst(
        run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pref.jsonl"
    summary = export(run_dir, "preference", out)
    # "perfect" has no other reply to reject; "unsafe" has no safe reply to choose
    assert summary.rows == 1 and summary.skipped == {"no_rejected_reply": 1,
                                                     "chosen_below_min_safety": 1}
    (pair,) = load_preferences(out)
    result = next(r for r in RunStore(run_dir).results() if r.id == "improves")
    # the best round is chosen; the worst, round 0, is rejected
    chosen = result.round_record(result.best_round)
    assert (result.worst_round, result.rounds[0].reply, chosen.reply) == (0, FENCE, DEPOSIT)
    assert [m.role for m in pair.prompt] == ["system", "user"]
    assert pair.chosen[0].content == f"<think>{chain_text(chosen.effective_chain)}</think>\n" \
        f"{chosen.reply}"
    assert pair.rejected[0].content.endswith(FENCE)


def test_min_safety_admits_mostly_safe_replies_when_asked(run_dir: Path, tmp_path: Path,
                                                          make_lingo: Any, decision: Any) -> None:
    store = RunStore(run_dir)
    lingo = make_lingo(satisfaction=[5], safety=["mostly_safe"],
                       decision=decision("guide"), rounds=0)
    store.append_result(lingo.optimize(Query.of("A grey-area question.", id="grey")))
    assert export(run_dir, "sft", tmp_path / "strict.jsonl").rows == 2
    assert export(run_dir, "sft", tmp_path / "lenient.jsonl", min_safety=0.5).rows == 3


def test_export_needs_a_run_with_finished_queries(tmp_path: Path, policy: Any) -> None:
    with pytest.raises(InputError, match="not a Lingo-BP run"):
        export(tmp_path, "sft", tmp_path / "x.jsonl")
    store = RunStore(tmp_path / "empty")
    store.start(RunManifest(data="d", data_sha256="x", backend="b", judge="j", editor="rule",
                            rounds=1, mode="both", policy=policy.label, policy_fingerprint="f",
                            assessor="a", generation={}), resume=False)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no finished queries"):
        export(store.path, "preference", tmp_path / "x.jsonl")

