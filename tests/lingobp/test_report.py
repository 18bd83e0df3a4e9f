"""The per-round table: queries that stopped early count with their last round."""

from __future__ import annotations

from typing import Any

from oyster.lingobp import Query, run_numbers
from oyster.lingobp.report import round_table


def test_round_means_carry_early_stoppers_forward(make_lingo: Any, decision: Any) -> None:
    improving = make_lingo(satisfaction=[-5, 0, 5], decision=decision("guide")).optimize(
        Query.of("I feel awful.", id="a").model_copy(update={"level": "R1"}))
    perfect = make_lingo(satisfaction=[5], decision=decision("guide", level="R0")).optimize(
        Query.of("Hello there.", id="b").model_copy(update={"level": "R1"}))
    assert [r.round for r in improving.rounds] == [0, 1, 2] and len(perfect.rounds) == 1
    numbers = run_numbers([improving, perfect])
    rows = {r.round: r for r in numbers.rounds}
    assert list(rows) == ["0", "1", "2", "best"]
    assert [rows[k].satisfaction for k in ("0", "1", "2")] == [0.0, 0.5, 1.0]
    assert [rows[k].edited for k in ("0", "1", "2")] == [2, 1, 1]
    assert rows["best"].satisfaction == 1.0 and rows["best"].queries == 2
    assert numbers.stopped == {"max_scores": 2}
    assert numbers.preference_pairs == 1
    assert numbers.level_agreement == 0.5
    table = round_table(numbers)
    assert table.splitlines()[0] == "| round | queries | edited | satisfaction | safety | C_2 |"
    assert "| 2 | 2 | 1 | +1.000 |" in table
