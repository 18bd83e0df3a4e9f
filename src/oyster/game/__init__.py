"""The Stackelberg game (docs/decisions.md): the assistant commits to a strategy, the user of
unknown type reacts, and the assistant picks the strategy with the best expected outcome."""

from oyster.game.belief import TypeEvidence, posterior_over_types
from oyster.game.solve import (
    GameTables,
    StrategyChoice,
    choose_strategy,
    expected_utilities,
    game_tables,
    harm_scale,
    leader_values,
    reaction_probabilities,
)

__all__ = [
    "GameTables",
    "StrategyChoice",
    "TypeEvidence",
    "choose_strategy",
    "expected_utilities",
    "game_tables",
    "harm_scale",
    "leader_values",
    "posterior_over_types",
    "reaction_probabilities",
]
